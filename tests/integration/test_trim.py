"""Trimming the WAL never drops an entry that is pending or not yet delivered."""

from __future__ import annotations

import random

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from core.store.connections import raw_command
from core.store.db import migrate
from core.store.keys import CONSUMER_GROUP
from tests.conftest import REDIS_URL


def _ids(client: redis.Redis, wal: str) -> set[str]:
    return {entry_id for entry_id, _ in client.xrange(wal)}


def test_trim_keeps_a_dead_consumers_pending_entries(
    client: MemoryClient, make_settings: object
) -> None:
    """Entries a dead consumer holds survive trims done by a live drainer's batches."""
    one_shard: Settings = make_settings(shards=1, batch_size=50)  # type: ignore[operator]
    client = MemoryClient(redis=client.redis, settings=one_shard)
    for i in range(300):
        client.append(f"s-{i % 7}", "user", f"m{i}")
    wal = client.keys.wal(0)
    dead = Drainer(redis=client.redis, engine=client.engine, settings=one_shard, consumer="dead")
    live = Drainer(redis=client.redis, engine=client.engine, settings=one_shard, consumer="live")
    dead.ensure_group(0)
    held = [entry_id for entry_id, _ in dead.read_new(0, count=50)]
    for _ in range(4):
        live.process(0, live.read_new(0, count=50))
    remaining = _ids(client.redis, wal)
    assert set(held) <= remaining
    assert len(remaining) == 300  # the oldest pending entry is the first: nothing trimmed
    # Once the dead consumer's entries are acked, the trim catches up.
    oldest = raw_command(client.redis, "XRANGE", wal, "-", "+", "COUNT", 50)
    live.process(0, [(entry_id.decode(), fields) for entry_id, fields in oldest])
    # 250 delivered (50 dead + 4 x 50 live): MINID is the last delivered id, so 51 remain.
    assert len(_ids(client.redis, wal)) == 300 - 250 + 1


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite store: a session's first append reads it (the cold path)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('trim') / 'memscribe.db'}"
    migrate(url)
    return url


@settings(max_examples=40, deadline=None)
@given(
    appends=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_trim_never_drops_unacked_entries(store_url: str, appends: list[int], seed: int) -> None:
    """Random reads by several consumers and random acks: every un-acked entry is still there."""
    rng = random.Random(seed)
    client: redis.Redis = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    client.flushdb()
    test_settings = Settings(redis_url=REDIS_URL, shards=1, database_url=store_url)
    memory = MemoryClient(redis=client, settings=test_settings)
    wal = memory.keys.wal(0)
    client.xgroup_create(wal, CONSUMER_GROUP, id="0", mkstream=True)
    acked: set[str] = set()
    for count in appends:
        for i in range(count):
            memory.append(f"s{i % 3}", "user", "x")
        consumer = f"c{rng.randrange(3)}"
        reply = client.xreadgroup(CONSUMER_GROUP, consumer, {wal: ">"}, count=rng.randint(1, 40))
        delivered = [entry_id for entry_id, _ in (reply[0][1] if reply else [])]
        pending = [
            p["message_id"] for p in client.xpending_range(wal, CONSUMER_GROUP, "-", "+", 10_000)
        ]
        to_ack = [entry_id for entry_id in pending if rng.random() < 0.5]
        if to_ack:
            memory.scripts.ack_trim(
                keys=[wal, memory.keys.failing(0)], args=[CONSUMER_GROUP, len(to_ack), *to_ack]
            )
            acked |= set(to_ack)
        del delivered
    everything = {e for e, _ in client.xrange(wal)}
    unacked_pending = {
        p["message_id"] for p in client.xpending_range(wal, CONSUMER_GROUP, "-", "+", 10_000)
    }
    assert unacked_pending <= everything
    info = client.xinfo_groups(wal)[0]
    undelivered = client.xrange(wal, min=f"({info['last-delivered-id']}")
    assert len(undelivered) == int(info["lag"])
    client.close()
