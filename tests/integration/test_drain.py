"""The drainer, in process: batches land exactly once, in order, byte-identical."""

from __future__ import annotations

import time

import sqlalchemy as sa

from core.client import MemoryClient
from core.log.drainer import Drainer
from core.store.codec import encode_message
from core.store.db import make_engine
from tests.conftest import assert_exactly_once, both_backends, messages_in_store

# Strings that break naive COPY/CSV encoders or JSON round trips.
AWKWARD = [
    "tab\there",
    "new\nline and \r carriage",
    "back\\slash \\N \\t literal escapes",
    "quotes \" ' and commas, ;",
    "emoji 😀 and CJK 漢字 and RTL עברית",
    "",
    " leading and trailing spaces ",
    "\\",
    "\u2028 line separator \u0085 next line",
]


def _append_many(
    client: MemoryClient, sessions: int, per_session: int
) -> dict[str, tuple[str, str, int, str]]:
    appended = {}
    for i in range(per_session):
        for s in range(sessions):
            content = f"{AWKWARD[(i + s) % len(AWKWARD)]} #{i}"
            result = client.append(f"s-{s}", "user" if i % 2 else "assistant", content)
            appended[result.message_id] = ("default", f"s-{s}", result.seq, content)
    return appended


@both_backends
def test_drain_persists_everything_once(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    """Every appended message lands once, with its seq and exact content."""
    appended = _append_many(client, sessions=13, per_session=40)
    assert drainer.flush(timeout_s=60) == 0
    assert_exactly_once(database_url, appended)
    assert sum(status.backlog for status in drainer.status()) == 0


@both_backends
def test_replaying_a_batch_inserts_nothing_twice(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    """A batch persisted twice (crash between commit and XACK) is skipped the second time."""
    appended = _append_many(client, sessions=3, per_session=10)
    entries = []
    for shard in range(drainer.settings.shards):
        drainer.ensure_group(shard)
        entries += [(shard, drainer.read_new(shard, count=1000))]
    for shard, batch in entries:
        first, _ = drainer.persist(batch)
        second, _ = drainer.persist(batch)
        assert (second.persisted, second.skipped) == (0, len(batch))
        assert first.persisted == len(batch)
        drainer.acknowledge(shard, batch, [])
    assert_exactly_once(database_url, appended)


@both_backends
def test_sessions_are_recorded(client: MemoryClient, drainer: Drainer, database_url: str) -> None:
    """A sessions row carries subject, first/last append time and the last seq."""
    client.append("s", "user", "one", subject_id="alice")
    client.append("s", "assistant", "two")
    drainer.flush(timeout_s=30)
    client.append("s", "user", "three")
    drainer.flush(timeout_s=30)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT subject_id, last_seq, created_at <= updated_at AS ordered FROM sessions"
            )
        ).one()
    engine.dispose()
    assert (row.subject_id, row.last_seq, bool(row.ordered)) == ("alice", 3, True)


@both_backends
def test_metadata_round_trips(client: MemoryClient, drainer: Drainer, database_url: str) -> None:
    """Metadata is stored as JSON and reads back equal."""
    metadata = {"tool": "search", "args": {"q": "a\tb", "n": [1, 2.5, None, True]}, "ü": "ß"}
    client.append("s", "tool", "result", metadata=metadata)
    drainer.flush(timeout_s=30)
    engine = make_engine(database_url)
    with engine.connect() as connection:
        from core.store.db import messages

        stored = connection.execute(sa.select(messages.c.metadata)).scalar_one()
    engine.dispose()
    assert stored == metadata


def test_colliding_seq_is_dead_lettered_not_dropped(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    """A different message on an existing (session, seq) goes to the dead letters, not lost."""
    kept = client.append("s", "user", "first life")
    drainer.flush(timeout_s=30)
    # An entry that claims seq 1 of the session for another message (a second writer outside
    # append.lua, or a replayed entry from an old WAL copy): the store refuses it.
    keys = client.keys.session("default", "s")
    body = encode_message(
        message_id="other-life",
        tenant="default",
        session_id="s",
        role="user",
        content="second life",
        tokens=5,
        created_us=time.time_ns() // 1000,
        subject_id=None,
        metadata=None,
    )
    client.redis.xadd(keys.wal, {"k": "m", "v": "1", "q": kept.seq, "d": body})
    good = client.append("other", "user", "unaffected")
    assert drainer.flush(timeout_s=30) == 0
    ids = {row.message_id for row in messages_in_store(database_url)}
    assert ids == {kept.message_id, good.message_id}
    dead = client.redis.xrange(client.keys.dead_letters(keys.shard))
    assert len(dead) == 1
    assert "other-life" in dead[0][1]["d"]
    assert "duplicate key" in dead[0][1]["error"]


def test_drainer_recovers_when_redis_loses_the_stream(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    """After Redis forgets the WAL and its group, the same drainer re-creates the group."""
    client.append("s", "user", "before")
    assert drainer.flush(timeout_s=30) == 0
    client.redis.flushdb()  # a restart without AOF
    after = client.append("s", "user", "after")
    other = client.append("t", "user", "other")
    drainer.drain_all()  # the first pass may meet NOGROUP on a cached group
    assert drainer.flush(timeout_s=30) == 0
    stored = {row.message_id for row in messages_in_store(database_url)}
    # Session s continues from the store's last seq (Redis forgot it): nothing dead-lettered.
    assert after.seq == 2 and {after.message_id, other.message_id} <= stored
    assert not any(client.redis.xlen(client.keys.dead_letters(s)) for s in range(4))
