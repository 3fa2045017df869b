"""Retention: expires_at when written, and the purge (bounded, leased, index-only, and never
breaking what remains), on real Redis and PostgreSQL (and SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from core.log.repository import MessageRow, persist_messages
from core.retention.policy import RetentionPolicy
from core.retention.purge import LEASE_MS, Purge
from core.store.db import make_engine, messages, sessions
from core.store.keys import Keys
from core.store.lease import Lease
from core.store.scripts import Scripts
from core.summaries import store as summary_store
from core.summaries.store import SummaryRecord
from tests.conftest import both_backends

DAY_S = 24 * 3600
NOW = datetime.now(UTC)
# Tenant "short" keeps messages one day; everyone else the default (a year).
SHORT = {"short": {"messages": DAY_S, "summaries": DAY_S, "state": DAY_S}}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url=database_url, retention_tenants=SHORT)


def _rows(tenant: str, session_id: str, seqs: range, *, age: timedelta) -> list[MessageRow]:
    return [
        MessageRow(
            message_id=f"{tenant}-{session_id}-{seq}",
            tenant=tenant,
            session_id=session_id,
            seq=seq,
            role="user",
            content=f"turn {seq}",
            tokens=5,
            metadata=None,
            created_at=NOW - age + timedelta(milliseconds=seq),
        )
        for seq in seqs
    ]


def _count(url: str, table: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        found = int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    engine.dispose()
    return found


def _purge(client: MemoryClient, settings: Settings, **clock: Any) -> Purge:
    at = NOW + clock.get("later", timedelta(0))
    return Purge(
        redis=client.redis,
        engine=client.engine,
        settings=settings,
        scripts=client.scripts,
        clock=lambda: at,
    )


@both_backends
def test_expired_rows_are_gone_after_the_next_run(
    client: MemoryClient, settings: Settings, database_url: str
) -> None:
    """Messages past expires_at go in one run (within its limit); the rest stay, and the
    per-tenant override (one day) beats the default (a year)."""
    policy = RetentionPolicy.of(settings)
    persist_messages(
        client.engine, _rows("short", "a", range(1, 11), age=timedelta(days=2)), policy=policy
    )
    persist_messages(
        client.engine, _rows("short", "a", range(11, 14), age=timedelta(hours=1)), policy=policy
    )
    persist_messages(
        client.engine, _rows("default", "b", range(1, 6), age=timedelta(days=2)), policy=policy
    )
    report = _purge(client, settings).run()
    assert report.ran and report.counts["messages"] == 10 and not report.more
    with client.engine.connect() as connection:
        left = connection.execute(
            sa.select(messages.c.tenant, messages.c.seq).order_by(messages.c.tenant, messages.c.seq)
        ).all()
        session_rows = connection.execute(sa.select(sessions.c.session_id)).all()
    assert [tuple(r) for r in left] == [("default", s) for s in range(1, 6)] + [
        ("short", s) for s in range(11, 14)
    ]
    assert len(session_rows) == 2  # "a" still has messages: its row (and last_seq) stays
    assert _purge(client, settings).run().rows == 0


@both_backends
def test_over_the_limit_it_goes_over_successive_runs_in_bounded_batches(
    client: MemoryClient, make_settings: Callable[..., Settings], database_url: str
) -> None:
    """50 due rows, 20 per run in batches of 7: 20, 20, 10, then nothing."""
    settings = make_settings(
        database_url=database_url,
        retention_tenants=SHORT,
        purge_batch_rows=7,
        purge_max_rows_per_run=20,
    )
    rows = _rows("short", "a", range(1, 51), age=timedelta(days=2))
    persist_messages(client.engine, rows, policy=RetentionPolicy.of(settings))
    runs = [_purge(client, settings).run() for _ in range(4)]
    assert [r.counts["messages"] for r in runs] == [20, 20, 10, 0]
    assert [r.more for r in runs] == [True, True, False, False]
    assert runs[0].batches == 3  # 7 + 7 + 6
    assert _count(database_url, "messages") == 0


def test_an_overlapping_run_skips(
    client: MemoryClient, settings: Settings, database_url: str
) -> None:
    """While another run holds the purge lease, a run deletes nothing and says it skipped."""
    persist_messages(
        client.engine,
        _rows("short", "a", range(1, 4), age=timedelta(days=2)),
        policy=RetentionPolicy.of(settings),
    )
    scripts = Scripts.register(client.redis)
    other = Lease(client.redis, scripts.lease, Keys.of(settings).purge_lease(), LEASE_MS)
    assert other.acquire()
    report = _purge(client, settings).run()
    assert not report.ran and "skipped" in report.summary()
    assert _count(database_url, "messages") == 3
    other.release()
    assert _purge(client, settings).run().counts["messages"] == 3


@both_backends
def test_drained_rows_get_expires_at_per_tenant(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """The drainer stamps messages and their session with created_at + the tenant's
    retention: one day for "short", the default year for everyone else."""
    client.append("a", "user", "hello", tenant="short")
    client.append("b", "user", "hello", tenant="other")
    assert drainer.flush(timeout_s=30) == 0
    with client.engine.connect() as connection:
        found = {
            r.tenant: (r.created_at, r.expires_at)
            for r in connection.execute(
                sa.select(messages.c.tenant, messages.c.created_at, messages.c.expires_at)
            )
        }
        session_expiry = dict(
            connection.execute(sa.select(sessions.c.tenant, sessions.c.expires_at)).all()
        )
    assert found["short"][1] - found["short"][0] == timedelta(days=1)
    assert found["other"][1] - found["other"][0] == timedelta(seconds=settings.retention_messages_s)
    assert session_expiry["short"] == found["short"][1]


def test_redis_ttls_never_outlive_retention(
    client: MemoryClient, make_settings: Callable[..., Settings], redis_client: redis.Redis
) -> None:
    """A tenant keeping messages 2 minutes gets a session TTL of 2 minutes, not the 30-day
    default; its memory view and state are clamped the same way."""
    settings = make_settings(
        retention_tenants={"brief": {"messages": 120, "memories_low": 120, "state": 120}}
    )
    memory = MemoryClient(redis=redis_client, settings=settings)
    memory.append("s", "user", "hi", tenant="brief")
    memory.append("s", "user", "hi", tenant="long")
    keys = Keys.of(settings)
    assert 0 < redis_client.ttl(keys.session("brief", "s").meta) <= 120
    assert redis_client.ttl(keys.session("long", "s").meta) > 120
    memory.remember("u1", "likes tea", tenant="brief", priority="LOW")
    assert 0 < redis_client.ttl(keys.subject("brief", "u1").memories) <= 120
    state = memory.state("s", tenant="brief")
    state.data["k"] = 1
    state.save()
    assert 0 < redis_client.ttl(keys.state("brief", "s").main) <= 120
    memory.close()


@both_backends
def test_context_read_through_and_seq_continue_after_a_purge(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """Purging a session's oldest messages drops them from the Redis buffer too; the summary
    that covered them stays; a read-through shows what remains; seq goes on."""
    for n in range(1, 11):
        client.append("s", "user", f"turn {n}", tenant="short")
    assert drainer.flush(timeout_s=30) == 0
    summary_store.save_summary(
        client.engine,
        SummaryRecord(
            "short", "s", 5, 1, "the first five turns", 6, 50, "m", NOW - timedelta(days=3)
        ),
        usage="never",
        policy=RetentionPolicy.of(settings),
    )
    with client.engine.begin() as connection:  # seq 1..6 written "two days ago"
        connection.execute(
            sa.update(messages)
            .where(messages.c.seq <= 6)
            .values(expires_at=NOW - timedelta(days=1))
        )
    report = _purge(client, settings).run()
    assert report.counts["messages"] == 6 and report.redis["buffer_items"] == 6
    assert report.counts["summaries"] == 0  # expired, but the newest one of a live session
    assert [m.seq for m in client.context("s", tenant="short").messages] == [7, 8, 9, 10]

    keys = Keys.of(settings).session("short", "s")
    client.redis.delete(*keys.own())  # Redis forgets the session
    context = client.context("s", tenant="short")
    assert context.from_durable_store
    assert [m.seq for m in context.messages] == [7, 8, 9, 10]
    assert context.summary == "the first five turns"
    assert client.append("s", "user", "next", tenant="short").seq == 11


@both_backends
def test_a_session_row_goes_only_once_nothing_of_it_is_left(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """All messages (and the summary) due: the session row goes too; a later append to the
    same id starts a new conversation at seq 1, and nothing of the old one comes back."""
    policy = RetentionPolicy.of(settings)
    persist_messages(
        client.engine, _rows("short", "gone", range(1, 4), age=timedelta(days=2)), policy=policy
    )
    report = _purge(client, settings).run()
    assert (report.counts["messages"], report.counts["sessions"]) == (3, 1)
    result = client.append("gone", "user", "fresh start", tenant="short")
    assert result.seq == 1
    assert [m.content for m in client.context("gone", tenant="short").messages] == ["fresh start"]


def test_dead_letters_are_trimmed_by_age(
    client: MemoryClient, settings: Settings, redis_client: redis.Redis
) -> None:
    """Dead-letter entries older than their retention (14 days) go; newer ones stay."""
    keys = Keys.of(settings)
    old_ms = int((NOW - timedelta(days=20)).timestamp() * 1000)
    redis_client.xadd(keys.dead_letters(0), {"error": "x"}, id=f"{old_ms}-0")
    redis_client.xadd(keys.dead_letters(0), {"error": "y"})
    redis_client.xadd(keys.task_dead_letters(), {"error": "x"}, id=f"{old_ms}-0")
    report = _purge(client, settings).run()
    assert report.redis["dead_letters"] == 2
    assert redis_client.xlen(keys.dead_letters(0)) == 1
    assert redis_client.xlen(keys.task_dead_letters()) == 0


def test_decayed_memories_leave_the_store_and_the_view(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """A memory past its expires_at is purged from PostgreSQL and from recall's Redis view;
    a live one stays."""
    gone = client.remember("u", "old fact", tenant="t")
    kept = client.remember("u", "new fact", tenant="t")
    assert drainer.flush(timeout_s=30) == 0
    with client.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE memories SET expires_at = :at WHERE memory_id = :id"),
            {"at": NOW - timedelta(days=1), "id": gone},
        )
    report = _purge(client, settings).run()
    assert report.counts["memories"] == 1 and report.redis["view_memories"] == 1
    assert [m.memory_id for m in client.recall("u", tenant="t")] == [kept]


def test_purge_walks_the_index_and_never_scans_messages(
    client: MemoryClient, settings: Settings, database_url: str
) -> None:
    """EXPLAIN of a purge batch on 20,000 messages: the partial index, no Seq Scan."""
    with client.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO messages (message_id, tenant, session_id, seq, role, content, tokens,"
                " created_at, expires_at) SELECT 'm' || g, 't', 's' || (g % 100), g, 'user', 'x',"
                " 1, now(), CASE WHEN g % 3 = 0 THEN NULL ELSE now() + g * interval '1 s' END"
                " FROM generate_series(1, 20000) g"
            )
        )
        connection.execute(sa.text("ANALYZE messages"))
        from core.retention import sql

        statement = sql.expiring_batch("postgresql", "messages")
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                sa.text("EXPLAIN " + str(statement)), {"now": NOW, "n": 5000}
            )
        )
    assert "ix_messages_expires_at" in plan, plan
    assert "Seq Scan on messages" not in plan, plan


def test_memscribe_purge_runs_once_and_prints_counts(
    client: MemoryClient, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`memscribe purge --json` does one run in-process and prints its counts (no ids)."""
    import argparse
    import json

    from worker.purge import cmd_purge

    persist_messages(
        client.engine,
        _rows("short", "a", range(1, 4), age=timedelta(days=2)),
        policy=RetentionPolicy.of(settings),
    )
    assert cmd_purge(settings, argparse.Namespace(json=True)) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["counts"]["messages"] == 3 and printed["ran"] is True
    assert "short-a-1" not in json.dumps(printed)


def test_a_memory_expires_by_its_priority_and_a_priority_change_moves_it(
    client: MemoryClient, drainer: Drainer, make_settings: Callable[..., Settings]
) -> None:
    """LOW kept one day (the tenant's cap, before its 30-day decay); raised to HIGH, which has
    no cap, its expiry moves out to the HIGH decay."""
    settings = make_settings(retention_tenants={"t": {"memories_low": DAY_S}})
    memory = MemoryClient(redis=client.redis, settings=settings)
    drain = Drainer(redis=client.redis, engine=client.engine, settings=settings, consumer="m")

    def expiry(memory_id: str) -> timedelta:
        assert drain.flush(timeout_s=30) == 0
        with client.engine.connect() as connection:
            row = connection.execute(
                sa.text("SELECT created_at, expires_at FROM memories WHERE memory_id = :id"),
                {"id": memory_id},
            ).one()
        return row.expires_at - row.created_at

    memory_id = memory.remember("u", "likes tea", tenant="t", priority="LOW")
    assert expiry(memory_id) == timedelta(days=1)
    memory.set_priority(memory_id, "HIGH", tenant="t")
    assert expiry(memory_id) >= timedelta(seconds=settings.memory_ttl_high_s)
    memory.close()
