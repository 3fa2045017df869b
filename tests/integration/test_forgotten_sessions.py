"""A session Redis has forgotten continues from the durable store; it never starts over.

Redis forgets a session when its keys expire (a user back after the TTL), when its database is
flushed, or when it restarts without AOF. Each way: every row stored once, seq 1..n, no dead
letter, the summary, buffer and per-session settings restored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from core.client import MemoryClient, redis_from_url
from core.log.drainer import Drainer
from tests.conftest import assert_commit_order, assert_exactly_once, both_backends
from tests.helpers.private_redis import PrivateRedis

Appended = dict[str, tuple[str, str, int, str]]


def _append(client: MemoryClient, appended: Appended, session: str, n: int, start: int) -> None:
    for i in range(start, start + n):
        content = f"{session} turn {i}"
        result = client.append(session, "user" if i % 2 else "assistant", content)
        appended[result.message_id] = ("default", session, result.seq, content)


def _dead_letters(client: MemoryClient) -> int:
    return sum(int(client.redis.xlen(client.keys.dead_letters(s))) for s in range(4))


def _expire(client: MemoryClient, session: str) -> None:
    """Let the session's own keys reach their TTL (shortened to 1 ms), as after a long pause."""
    keys = client.keys.session("default", session)
    for key in keys.own():
        client.redis.pexpire(key, 1)
    time.sleep(0.01)
    assert not client.redis.exists(keys.meta, keys.buffer, keys.recent_ids)


@both_backends
def test_session_continues_after_its_ttl(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    appended: Appended = {}
    client.configure_session("s", buffer_max_messages=5)
    _append(client, appended, "s", 12, 0)
    assert drainer.flush(timeout_s=30) == 0
    _expire(client, "s")

    _append(client, appended, "s", 8, 12)
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url)
    assert _dead_letters(client) == 0
    # The buffer came back with the session's own window (5) and its settings.
    context = client.context("s")
    assert [m.seq for m in context.messages] == list(range(16, 21))
    assert client.memory_stats("s").settings.buffer_max_messages == 5


def test_session_continues_after_flushdb(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    appended: Appended = {}
    for session in ("a", "b", "c"):
        _append(client, appended, session, 7, 0)
    assert drainer.flush(timeout_s=30) == 0
    client.redis.flushdb()
    for session in ("a", "b", "c", "new"):
        _append(client, appended, session, 5, 7)
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url)
    assert _dead_letters(client) == 0
    assert [client.memory_stats(s).last_seq for s in ("a", "new")] == [12, 5]


def test_undrained_entries_keep_seq_above_them(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    """The session expires while its newest entries are still in the WAL (the drain is
    behind): the next append continues above them, not above the store's last seq."""
    appended: Appended = {}
    _append(client, appended, "s", 4, 0)
    assert drainer.flush(timeout_s=30) == 0
    _append(client, appended, "s", 3, 4)  # seq 5..7: not drained yet
    _expire(client, "s")
    _append(client, appended, "s", 2, 7)
    assert sorted(seq for _, _, seq, _ in appended.values()) == list(range(1, 10))
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url)
    assert _dead_letters(client) == 0
    # Once durable, the high water of the session is cleared.
    assert not client.redis.hexists(
        client.keys.high_water(client.keys.session("default", "s").shard), "default/s"
    )


def _append_at_once(clients: list[MemoryClient], appended: Appended, *, label: str) -> None:
    """Each client appends 3 messages to session s; all start at the same moment."""
    barrier = threading.Barrier(len(clients))
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        for i in range(3):
            content = f"{label} writer {index} turn {i}"
            result = clients[index].append("s", "user", content)
            with lock:
                appended[result.message_id] = ("default", "s", result.seq, content)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_two_cold_appenders_at_once(
    client: MemoryClient, drainer: Drainer, database_url: str, settings: Settings
) -> None:
    """Two processes' first appends to the same forgotten session: one restores, both append;
    no duplicate seq, no gap."""
    appended: Appended = {}
    _append(client, appended, "s", 6, 0)
    assert drainer.flush(timeout_s=30) == 0
    for round_ in range(5):
        _expire(client, "s")
        clients = [
            MemoryClient(redis=redis_from_url(settings.redis_url), settings=settings)
            for _ in range(4)
        ]
        _append_at_once(clients, appended, label=f"round {round_}")
        for other in clients:
            other.close()
        assert drainer.flush(timeout_s=30) == 0
    assert len(appended) == 6 + 5 * 4 * 3
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url)
    assert _dead_letters(client) == 0


def test_restart_without_aof_continues(
    tmp_path: Path, make_settings: Callable[..., Settings], pg_database: str
) -> None:
    """Redis restarts with nothing kept (no AOF): sessions continue from the store."""
    server = PrivateRedis(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        settings = make_settings(redis_url=server.url(0), database_url=pg_database)
        client = MemoryClient(redis=redis_from_url(settings.redis_url), settings=settings)
        drainer = Drainer(redis=client.redis, engine=client.engine, settings=settings)
        appended: Appended = {}
        client.configure_session("s", summary_trigger_tokens=10_000, keep_recent_tokens=5)
        for session in ("s", "t"):
            _append(client, appended, session, 5, 0)
        assert drainer.flush(timeout_s=30) == 0
        server.kill()
        server.start()
        assert client.redis.dbsize() == 0  # nothing kept
        for session in ("s", "t"):
            _append(client, appended, session, 5, 5)
        assert drainer.flush(timeout_s=60) == 0
        assert_exactly_once(pg_database, appended)
        assert _dead_letters(client) == 0
        # The settings came back from the store.
        assert client.memory_stats("s").settings.summary_trigger_tokens == 10_000
        client.close()
    finally:
        server.stop()


def test_memory_stats_of_a_cold_session_come_from_the_store(
    client: MemoryClient, drainer: Drainer
) -> None:
    results = [client.append("s", "user", f"turn {i}") for i in range(9)]
    assert drainer.flush(timeout_s=30) == 0
    client.redis.flushdb()
    stats = client.memory_stats("s")
    assert not stats.in_redis
    assert stats.last_seq == 9
    assert stats.unsummarized_tokens == sum(r.tokens for r in results)
    assert client.redis.dbsize() == 0  # describing a cold session does not re-warm it


def test_settings_survive_redis_forgetting_the_session(
    client: MemoryClient, drainer: Drainer
) -> None:
    """configure_session's overrides live in the store too; a cold append uses them."""
    client.configure_session("s", summary_trigger_tokens=60, keep_recent_tokens=10)
    client.redis.flushdb()
    assert client.memory_stats("s").settings.summary_trigger_tokens == 60
    crossed = [client.append("s", "user", "a message of some length " * 2) for _ in range(6)]
    assert any(r.summary_triggered for r in crossed)
    assert client.configure_session("s", reset=True) == client.memory_defaults
    client.redis.flushdb()
    assert client.memory_stats("s").settings == client.memory_defaults


def test_configure_session_never_loses_a_concurrent_update(
    client: MemoryClient, settings: Settings
) -> None:
    """Two writers change different settings of one session at once: both changes stay."""
    clients = [
        MemoryClient(redis=redis_from_url(settings.redis_url), settings=settings) for _ in range(2)
    ]
    barrier = threading.Barrier(2)

    def triggers() -> None:
        barrier.wait()
        for i in range(25):
            clients[0].configure_session("s", summary_trigger_tokens=5000 + i)

    def windows() -> None:
        barrier.wait()
        for i in range(25):
            clients[1].configure_session("s", buffer_max_messages=10 + i)

    threads = [threading.Thread(target=triggers), threading.Thread(target=windows)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    effective = client.memory_stats("s").settings
    assert (effective.summary_trigger_tokens, effective.buffer_max_messages) == (5024, 34)
    client.redis.flushdb()
    durable = client.memory_stats("s").settings
    assert (durable.summary_trigger_tokens, durable.buffer_max_messages) == (5024, 34)
    for other in clients:
        other.close()


def test_brand_new_session_costs_two_calls_then_one(client: MemoryClient) -> None:
    """A session's first append reads the store (one query, nothing found) and calls the
    script again; every later append is the single EVALSHA."""
    sent: list[str] = []
    send = client.redis.execute_command

    def counted(*args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return send(*args, **options)

    client.redis.execute_command = counted  # type: ignore[method-assign]
    try:
        client.append("fresh", "user", "hello")
        first = list(sent)
        sent.clear()
        for _ in range(3):
            client.append("fresh", "user", "again")
    finally:
        del client.redis.execute_command
    assert (first, sent) == (["EVALSHA", "EVALSHA"], ["EVALSHA"] * 3)
