"""Poison entries are isolated and dead-lettered; `memscribe dlq` lists, replays and drops."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from core.client import MemoryClient
from core.log import deadletters
from core.log.drainer import Drainer
from core.store.db import make_engine
from core.store.keys import CONSUMER_GROUP
from tests.conftest import assert_exactly_once, messages_in_store
from tests.integration.test_cli import memscribe

POISON = "POISON"


@pytest.fixture
def poison_rule(database_url: str) -> Iterator[sa.Engine]:  # also used by tests/chaos
    """A table constraint that rejects some content, as a DBA's rule or trigger would."""
    engine = make_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "ALTER TABLE messages ADD CONSTRAINT no_poison "
                f"CHECK (content NOT LIKE '%{POISON}%')"
            )
        )
    yield engine
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE messages DROP CONSTRAINT IF EXISTS no_poison"))
    engine.dispose()


def lift(rule: sa.Engine) -> None:
    with rule.begin() as connection:
        connection.execute(sa.text("ALTER TABLE messages DROP CONSTRAINT no_poison"))


def _append(
    client: MemoryClient, count: int, poison_at: set[int]
) -> dict[str, tuple[str, str, int, str]]:
    appended = {}
    for i in range(count):
        content = f"{POISON} {i}" if i in poison_at else f"good {i}"
        session_id = f"s-{i % 17}"
        result = client.append(session_id, "user", content)
        appended[result.message_id] = ("default", session_id, result.seq, content)
    return appended


def test_poison_is_bisected_out_and_replays_after_a_fix(
    client: MemoryClient,
    drainer: Drainer,
    settings: Settings,
    database_url: str,
    poison_rule: sa.Engine,
) -> None:
    """3 rejected among 1,000: the rest land, exactly those 3 are dead, replay lands them."""
    appended = _append(client, 1000, poison_at={10, 500, 999})
    poisoned = {mid for mid, (_, _, _, content) in appended.items() if POISON in content}
    assert drainer.flush(timeout_s=60) == 0
    assert {row.message_id for row in messages_in_store(database_url)} == set(appended) - poisoned

    letters = deadletters.list_dead_letters(client.redis, client.keys)
    assert {letter.detail["message_id"] for letter in letters} == poisoned
    assert all("no_poison" in letter.error and letter.attempts == 1 for letter in letters)
    assert all(letter.first_failed_ms <= letter.last_failed_ms for letter in letters)

    listed = memscribe(settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {entry["id"] for entry in json.loads(listed.stdout)} == {letter.id for letter in letters}
    assert POISON not in listed.stdout.replace("no_poison", "")  # ids and errors, never content
    status = json.loads(memscribe(settings, "status", "--json").stdout)
    assert status["dead_letters"] == {"wal": 3, "task": 0}

    lift(poison_rule)  # the fix
    replayed = memscribe(settings, "dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "replayed 3 of 3" in replayed.stdout
    assert drainer.flush(timeout_s=60) == 0
    assert_exactly_once(database_url, appended)
    assert deadletters.list_dead_letters(client.redis, client.keys) == []
    again = memscribe(settings, "dlq", "replay", letters[0].id)  # already replayed: a no-op
    assert again.returncode == 1 and "replayed 0 of 1" in again.stdout
    assert_exactly_once(database_url, appended)


def test_replaying_the_same_entry_twice_stores_it_once(
    client: MemoryClient, drainer: Drainer, database_url: str, poison_rule: sa.Engine
) -> None:
    """A dead letter copied back twice (crash between move and ack) is still stored once."""
    appended = _append(client, 20, poison_at={3})
    drainer.flush(timeout_s=30)
    [letter] = deadletters.list_dead_letters(client.redis, client.keys)
    shard = letter.detail["shard"]
    [(_dead_id, fields)] = client.redis.xrange(client.keys.dead_letters(shard))
    client.redis.xadd(client.keys.wal(shard), {"q": fields["q"], "d": fields["d"]})
    lift(poison_rule)
    assert deadletters.replay_wal(client.redis, client.keys, client.scripts, letter.id)
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(database_url, appended)


def test_drop_deletes_a_dead_letter(
    client: MemoryClient, drainer: Drainer, settings: Settings, poison_rule: sa.Engine
) -> None:
    """dlq drop removes exactly the named dead letter."""
    _append(client, 10, poison_at={1, 2})
    drainer.flush(timeout_s=30)
    first, second = deadletters.list_dead_letters(client.redis, client.keys)
    result = memscribe(settings, "dlq", "drop", first.id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [letter.id for letter in deadletters.list_dead_letters(client.redis, client.keys)] == [
        second.id
    ]
    assert memscribe(settings, "dlq", "drop", first.id).returncode == 1
    bad = memscribe(settings, "dlq", "drop", "wal:*:1-0")
    assert bad.returncode == 2 and "id:" in bad.stdout


def test_entry_delivered_too_often_is_dead_lettered(
    client: MemoryClient, make_settings: object, database_url: str
) -> None:
    """An entry that keeps coming back (it crashed drainers) stops at max_deliveries."""
    settings: Settings = make_settings(max_deliveries=3, drain_lease_ms=100, shards=1)  # type: ignore[operator]
    memory = MemoryClient(redis=client.redis, settings=settings)
    victim = memory.append("s", "user", "crashes every drainer that reads it")
    wal = memory.keys.wal(0)
    drainer = Drainer(redis=client.redis, engine=memory.engine, settings=settings, consumer="d")
    drainer.ensure_group(0)
    assert len(drainer.read_new(0, count=10)) == 1  # delivery 1, then the drainer "crashes"
    for crash in range(3):  # deliveries 2..4: each one a drainer that died holding it
        client.redis.xclaim(
            wal, CONSUMER_GROUP, f"crashed-{crash}", 0, [client.redis.xrange(wal)[0][0]]
        )
    import time

    time.sleep(0.15)  # idle past the lease: reclaimable
    assert drainer.flush(timeout_s=30) == 0
    assert messages_in_store(database_url) == []
    [letter] = deadletters.list_dead_letters(client.redis, memory.keys)
    assert letter.detail["message_id"] == victim.message_id
    assert letter.attempts == 5 and "delivered 5 times (limit 3)" in letter.error
    assert letter.first_failed_ms <= letter.last_failed_ms
