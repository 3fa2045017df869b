"""A malformed WAL entry, whatever its bytes or fields, is dead-lettered raw and acked; every
other entry on every shard still drains. An entry of a kind this worker does not know is left
for a newer worker, in order, never dead-lettered."""

from __future__ import annotations

import base64
import json
import time

import redis

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from core.log.entries import DECODERS, MESSAGE, decode_message
from core.store.connections import raw_command
from core.store.keys import CONSUMER_GROUP
from core.store.lease import Lease
from tests.conftest import assert_commit_order, assert_exactly_once, messages_in_store
from tests.integration.test_cli import memscribe

Appended = dict[str, tuple[str, str, int, str]]


def _append(client: MemoryClient, count: int, *, sessions: int = 40) -> Appended:
    appended: Appended = {}
    for i in range(count):
        session_id = f"s-{i % sessions}"
        result = client.append(session_id, "user", f"good {i}")
        appended[result.message_id] = ("default", session_id, result.seq, f"good {i}")
    return appended


def _raw(client: MemoryClient) -> redis.Redis:
    kwargs = client.redis.connection_pool.connection_kwargs | {"decode_responses": False}
    return redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))


def test_a_garbage_entry_never_stops_the_drain(
    client: MemoryClient, settings: Settings, database_url: str
) -> None:
    """The independent check's scenario: 200 good messages around one entry of bytes that
    are not UTF-8. `memscribe flush --wait` exits 0; 200 durable; 1 dead letter, shown raw."""
    appended = _append(client, 100)
    shard = client.keys.session("default", "s-0").shard
    _raw(client).xadd(client.keys.wal(shard), {b"garbage": b"\xff\xfe\x00binary"})
    appended |= _append(client, 100)

    status = memscribe(settings, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["totals"]["backlog"] == 201
    flushed = memscribe(settings, "flush", "--wait", "--timeout", "60")
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert_exactly_once(database_url, appended)

    listed = memscribe(settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [letter] = json.loads(listed.stdout)
    assert letter["id"].startswith(f"wal:{shard}:")
    assert "not UTF-8" in letter["error"]
    value = letter["detail"]["fields"]["garbage"]
    assert base64.b64decode(value["base64"]) == b"\xff\xfe\x00binary"
    assert json.loads(memscribe(settings, "status", "--json").stdout)["totals"]["backlog"] == 0
    # An operator can drop it (or replay it, which dead-letters it again: it is junk).
    assert memscribe(settings, "dlq", "replay", letter["id"]).returncode == 0
    assert memscribe(settings, "flush", "--wait", "--timeout", "60").returncode == 0
    [again] = json.loads(memscribe(settings, "dlq", "list", "--json").stdout)
    assert memscribe(settings, "dlq", "drop", again["id"]).returncode == 0
    assert json.loads(memscribe(settings, "dlq", "list", "--json").stdout) == []


BAD_ENTRIES: list[dict[bytes, bytes]] = [
    {b"k": b"m", b"v": b"1", b"q": b"7"},  # no record
    {b"k": b"m", b"v": b"1", b"d": b"{}"},  # no seq, empty record
    {b"q": b"x", b"d": b'{"id": "a"}'},  # legacy shape, seq not a number
    {b"k": b"m", b"v": b"1", b"q": b"3", b"d": b"not json"},
    {b"k": b"m", b"v": b"1", b"q": b"3", b"d": b"[1, 2, 3]"},  # JSON of the wrong shape
    {b"k": b"m", b"v": b"one", b"q": b"3", b"d": b"{}"},  # version not a number
    {b"k": b"M!", b"v": b"1"},  # not the shape of a kind
    {b"\xff": b"\x00"},
    {b"k": b"m", b"v": b"1", b"q": b"-5", b"d": b"{}"},
]


def test_every_kind_of_bad_entry_is_dead_lettered_once(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    appended = _append(client, 50, sessions=8)
    raw = _raw(client)
    for index, fields in enumerate(BAD_ENTRIES):
        raw.xadd(client.keys.wal(index % client.settings.shards), fields)
    appended |= _append(client, 50, sessions=8)
    assert drainer.flush(timeout_s=60) == 0
    assert_exactly_once(database_url, appended)
    dead = [
        fields
        for shard in range(client.settings.shards)
        for _, fields in raw_command(
            client.redis, "XRANGE", client.keys.dead_letters(shard), "-", "+"
        )
    ]
    assert len(dead) == len(BAD_ENTRIES)
    assert all(fields[b"raw"] == b"1" for fields in dead)


def _newer_decoders() -> dict[tuple[str, str], object]:
    return {**DECODERS, ("m", "2"): decode_message}


def test_an_unknown_kind_waits_for_a_newer_worker_in_order(
    client: MemoryClient, settings: Settings, database_url: str
) -> None:
    """An old worker meets an entry of version 2 (written by a newer release): it leaves that
    entry and everything after it in its shard, acks nothing of it, dead-letters nothing, and
    skips the shard; other shards drain. A newer worker then drains the rest, in order."""
    old = Drainer(redis=client.redis, engine=client.engine, settings=settings, consumer="old")
    appended = _append(client, 40, sessions=8)
    keys = client.keys.session("default", "s-0")
    newer = client.append("s-0", "user", "written by a newer release")
    appended[newer.message_id] = ("default", "s-0", newer.seq, "written by a newer release")
    # Rewrite that entry as the newer release would have written it (version 2).
    [(entry_id, fields)] = client.redis.xrevrange(keys.wal, count=1)
    client.redis.xdel(keys.wal, entry_id)
    client.redis.xadd(keys.wal, {**fields, "v": "2"})
    after = [client.append("s-0", "user", f"after {i}") for i in range(3)]
    for i, result in enumerate(after):
        appended[result.message_id] = ("default", "s-0", result.seq, f"after {i}")

    assert old.flush(timeout_s=3) == 4  # the v2 entry and the three after it
    report = old.drain_all()
    assert keys.shard not in report.shards or report.waiting == {keys.shard: "m/2"}
    assert client.redis.get(client.keys.needs_newer(keys.shard)) == "m/2"
    assert client.redis.xlen(client.keys.dead_letters(keys.shard)) == 0
    pending = client.redis.xpending(keys.wal, CONSUMER_GROUP)["pending"]
    assert pending == 4  # left pending, never acked
    deliveries = [
        p["times_delivered"]
        for p in client.redis.xpending_range(keys.wal, CONSUMER_GROUP, "-", "+", 10)
    ]
    assert deliveries == [1, 1, 1, 1]  # the old worker did not keep re-reading them

    upgraded = Drainer(
        redis=client.redis,
        engine=client.engine,
        settings=settings,
        consumer="new",
        decoders=_newer_decoders(),  # type: ignore[arg-type]
    )
    assert upgraded.flush(timeout_s=30) == 0
    assert_exactly_once(database_url, appended)
    assert client.redis.get(client.keys.needs_newer(keys.shard)) is None
    assert sum(client.redis.xlen(client.keys.dead_letters(s)) for s in range(4)) == 0
    assert MESSAGE in DECODERS


def test_the_reclaim_loop_stops_when_the_lease_is_lost(
    client: MemoryClient, make_settings: object, database_url: str
) -> None:
    lease_ms = 200
    settings: Settings = make_settings(  # type: ignore[operator]
        database_url=database_url, shards=1, drain_lease_ms=lease_ms, batch_size=10
    )
    memory = MemoryClient(redis=client.redis, settings=settings)
    for i in range(50):
        memory.append("s", "user", f"m {i}")
    dead = Drainer(redis=client.redis, engine=memory.engine, settings=settings, consumer="dead")
    dead.ensure_group(0)
    dead.read_new(0, count=50)  # then it "crashes" holding 50 entries
    time.sleep(lease_ms / 1000 * 1.5)
    live = Drainer(redis=client.redis, engine=memory.engine, settings=settings, consumer="live")
    lease = Lease(client.redis, live.scripts.lease, client.keys.lease(0), lease_ms)
    assert lease.acquire()
    client.redis.set(client.keys.lease(0), "someone else")  # the lease passes to another
    claimed = live.reclaim(0, count=50, lease=lease)
    assert len(claimed) == 10  # one XAUTOCLAIM page, then it noticed the lost lease


def test_reclaim_never_stores_past_an_older_entry_still_held(
    client: MemoryClient, make_settings: object, database_url: str
) -> None:
    """Idle entries behind a recently taken-over older one wait for it: seq order holds.
    (Found by a helper's order check: XAUTOCLAIM skips the non-idle entry, claims the rest.)"""
    settings: Settings = make_settings(  # type: ignore[operator]
        database_url=database_url, shards=1, drain_lease_ms=300
    )
    memory = MemoryClient(redis=client.redis, settings=settings)
    appended: Appended = {}
    for i in range(20):
        result = memory.append("s", "user", f"m{i}")
        appended[result.message_id] = ("default", "s", result.seq, f"m{i}")
    wal = memory.keys.wal(0)
    dead = Drainer(redis=client.redis, engine=memory.engine, settings=settings, consumer="dead")
    dead.ensure_group(0)
    ids = [entry_id for entry_id, _ in dead.read_new(0, count=20)]
    time.sleep(0.35)
    client.redis.xclaim(wal, CONSUMER_GROUP, "alive", 0, ids[:10])  # taken over just now
    live = Drainer(redis=client.redis, engine=memory.engine, settings=settings, consumer="live")
    live.drain_shard(0, deadline=time.monotonic() + 5)
    assert messages_in_store(database_url) == []  # seqs 11..20 did not go first
    time.sleep(0.35)  # now "alive" is presumed dead too
    assert live.flush(timeout_s=30) == 0
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url) == 1
