"""Redis Cluster in process (no Celery): every shard's slot on its own master, drains, the
read-through, script reloads, budgets across slots and dead-letter replays, all through the
same connection factory the workers use."""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
import sqlalchemy as sa
from redis.crc import key_slot

from config.settings import Settings
from core.client import MemoryClient
from core.log import deadletters
from core.log.drainer import Drainer
from core.store.connections import redis_client
from core.summaries.budget import Budgets
from core.summaries.status import summarization_status
from core.summaries.summarizer import SessionSummarizer
from tests.cluster.conftest import (
    assert_no_cross_slot,
    keys_per_primary,
    master_of,
    nodes_holding,
    primaries,
)
from tests.conftest import assert_exactly_once
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.private_cluster import PrivateCluster
from tests.integration.test_cli import memscribe
from tests.integration.test_deadletters import POISON, lift, poison_rule  # noqa: F401
from tests.integration.test_summarize import openai_backend

Appended = dict[str, tuple[str, str, int, str]]


def drainer_for(client: MemoryClient) -> Drainer:
    return Drainer(redis=client.redis, engine=client.engine, settings=client.settings, consumer="t")


def append_many(
    client: MemoryClient, count: int, *, sessions: int, poison_at: set[int]
) -> Appended:
    appended: Appended = {}
    for i in range(count):
        session_id = f"s-{i % sessions}"
        content = f"{POISON} {i}" if i in poison_at else f"turn {i} of {session_id}"
        result = client.append(session_id, "user", content)
        appended[result.message_id] = ("default", session_id, result.seq, content)
    return appended


def test_shards_spread_over_every_master_and_drain_exactly_once(
    cluster_client: MemoryClient, cluster: PrivateCluster, pg_database: str
) -> None:
    """16 shards over 3 masters: every master holds WAL shards and sessions; one drainer
    stores each appended id once, seq 1..n per session."""
    client = cluster_client
    assert nodes_holding(client.redis, client.keys.all_wals()) == primaries(client.redis)
    appended = append_many(client, 960, sessions=96, poison_at=set())
    assert all(count > 0 for count in keys_per_primary(client.redis).values())
    assert drainer_for(client).flush(timeout_s=60) == 0
    assert_exactly_once(pg_database, appended)
    assert_no_cross_slot(cluster)


def test_context_reads_through_once_the_session_keys_are_gone(
    cluster_client: MemoryClient, cluster: PrivateCluster
) -> None:
    """Sessions on all three masters lose their keys: context() answers from PostgreSQL, the
    same messages, and re-warms the right node (the next call is a Redis hit)."""
    client = cluster_client
    append_many(client, 240, sessions=24, poison_at=set())
    assert drainer_for(client).flush(timeout_s=60) == 0
    sessions = [f"s-{i}" for i in range(24)]
    warm = {session: client.context(session) for session in sessions}
    own = [key for s in sessions for key in client.keys.session("default", s).own()]
    assert nodes_holding(client.redis, own) == primaries(client.redis)
    client.redis.delete(*own)  # redis-py splits a multi-key DEL per slot

    for session in sessions:
        cold = client.context(session)
        assert cold.from_durable_store
        assert [(m.seq, m.content) for m in cold.messages] == [
            (m.seq, m.content) for m in warm[session].messages
        ]
        again = client.context(session)
        assert not again.from_durable_store and again.messages == cold.messages
    assert_no_cross_slot(cluster)


def test_scripts_reload_on_every_master_after_a_script_flush(
    cluster_client: MemoryClient, cluster: PrivateCluster, pg_database: str
) -> None:
    """SCRIPT FLUSH on every primary (a failover to a fresh node): the next EVALSHA gets
    NOSCRIPT, the script is loaded again and the call goes through, on every master."""
    client = cluster_client
    first = append_many(client, 48, sessions=48, poison_at=set())
    client.redis.script_flush()  # redis-py sends it to every primary
    assert not any(client.redis.script_exists(client.scripts.append.sha))
    appended = {**first, **append_many(client, 96, sessions=48, poison_at=set())}
    assert drainer_for(client).flush(timeout_s=60) == 0  # ack_trim.lua reloads too
    assert_exactly_once(pg_database, appended)
    assert all(client.redis.script_exists(client.scripts.append.sha))
    assert_no_cross_slot(cluster)


def test_a_spent_budget_defers_across_slots_and_status_says_so(
    cluster_client: MemoryClient,
    cluster_settings: Settings,
    cluster: PrivateCluster,
    fake_openai: FakeOpenAI,
    make_cluster_settings: Callable[..., Settings],
) -> None:
    """The deferral writes two keys in two slots (no MULTI); resume finds the session; the CLI
    status on the cluster lists it."""
    settings = make_cluster_settings(summary_trigger_tokens=100, keep_recent_tokens=30)
    client = MemoryClient(redis=cluster_client.redis, settings=settings)
    keys = client.keys
    slots = {
        key_slot(keys.deferred_tenants().encode()),
        key_slot(keys.deferred_sessions("t").encode()),
    }
    assert len(slots) == 2  # the case a MULTI would refuse
    client.set_daily_token_budget("t", 50)
    service = SessionSummarizer(
        redis=client.redis,
        engine=client.engine,
        settings=settings,
        backend=openai_backend(fake_openai),
    )
    for i in range(10):
        client.append("s", "user", f"note-{i}: Alice asked about order {1000 + i}.", tenant="t")
    assert drainer_for(client).flush(timeout_s=30) == 0
    assert service.summarize("t", "s").status == "summarized"  # spends more than 50 tokens
    for i in range(10, 20):
        client.append("s", "user", f"note-{i}: Alice asked about order {1000 + i}.", tenant="t")
    assert drainer_for(client).flush(timeout_s=30) == 0
    assert service.summarize("t", "s").status == "deferred"
    assert Budgets(client.redis, keys, settings).deferred() == {"t": ["s"]}

    status = memscribe(settings, "status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    document = json.loads(status.stdout)
    [deferred] = document["summaries"]["deferred_by_budget"]
    assert (deferred["tenant"], deferred["sessions"], deferred["exhausted"]) == ("t", 1, True)
    assert len(document["shards"]) == 16 and document["totals"]["backlog"] == 0
    client.set_daily_token_budget("t", 0)
    assert service.summarize("t", "s").status == "summarized"
    assert summarization_status(client.redis, keys, settings)["deferred_by_budget"] == []
    client.engine.dispose()
    assert_no_cross_slot(cluster)


def test_poison_is_dead_lettered_and_replayed_on_the_cluster(
    cluster_client: MemoryClient,
    cluster_settings: Settings,
    cluster: PrivateCluster,
    pg_database: str,
    poison_rule: sa.Engine,  # noqa: F811
) -> None:
    """Poison in shards on all three masters: the rest lands, the CLI lists exactly those dead
    letters and, after the fix, replays them into their WALs; everything is stored once."""
    client = cluster_client
    by_master: dict[str, list[int]] = {}
    for i in range(48):  # message i is the first of session s-i
        wal = client.keys.session("default", f"s-{i}").wal
        by_master.setdefault(master_of(client.redis, wal), []).append(i)
    # Two sessions per master: their first message, and one later message of the second.
    poison_at = {i for first, second, *_ in by_master.values() for i in (first, second + 96)}
    appended = append_many(client, 480, sessions=48, poison_at=poison_at)
    poisoned = {mid for mid, row in appended.items() if POISON in row[3]}
    dead_shards = {client.keys.session("default", appended[mid][1]).shard for mid in poisoned}
    assert nodes_holding(client.redis, [client.keys.dead_letters(s) for s in dead_shards]) == (
        primaries(client.redis)
    )
    assert drainer_for(client).flush(timeout_s=60) == 0

    listed = memscribe(cluster_settings, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    letters = json.loads(listed.stdout)
    assert {letter["detail"]["message_id"] for letter in letters} == poisoned
    assert {letter["detail"]["shard"] for letter in letters} == dead_shards
    lift(poison_rule)
    replayed = memscribe(cluster_settings, "dlq", "replay", "--all")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"replayed {len(poisoned)} of {len(poisoned)}" in replayed.stdout
    assert drainer_for(client).flush(timeout_s=60) == 0
    assert_exactly_once(pg_database, appended)
    assert deadletters.list_dead_letters(client.redis, client.keys) == []
    assert_no_cross_slot(cluster)


def test_every_component_gets_a_cluster_client(
    cluster_settings: Settings, cluster_redis: redis.Redis
) -> None:
    """The factory, the task runtime and MemoryClient.from_settings all build RedisCluster."""
    from redis.cluster import RedisCluster

    from worker.runtime import Runtime

    built = [
        redis_client(cluster_settings),
        Runtime(settings=cluster_settings).redis,
        MemoryClient.from_settings(cluster_settings).redis,
    ]
    assert all(isinstance(client, RedisCluster) for client in built)
    assert all(client.ping() for client in built)
    for client in built:
        client.close()


def test_session_settings_stats_and_requests_use_one_slot(
    cluster_client: MemoryClient, cluster: PrivateCluster
) -> None:
    """configure_session (a MULTI), memory_stats (a pipeline) and request_summary (a script)
    on sessions of every master: each touches its session's slot only."""
    sent: list[tuple[str, list[str]]] = []
    client = MemoryClient(
        redis=cluster_client.redis,
        settings=cluster_client.settings,
        enqueue=lambda name, args: sent.append((name, args)),
    )
    sessions = [f"s-{i}" for i in range(24)]
    for session in sessions:
        effective = client.configure_session(session, summary_trigger_tokens=5000)
        assert effective.summary_trigger_tokens == 5000
        client.append(session, "user", "hello there")
        stats = client.memory_stats(session)
        assert (stats.in_redis, stats.last_seq, stats.settings.summary_trigger_tokens) == (
            True,
            1,
            5000,
        )
        assert client.request_summary(session) and not client.request_summary(session)
    assert sent == [("llm.summarize", ["default", session]) for session in sessions]
    metas = [client.keys.session("default", session).meta for session in sessions]
    assert nodes_holding(client.redis, metas) == primaries(client.redis)
    assert_no_cross_slot(cluster)


def test_forgotten_sessions_append_many_and_backpressure_on_the_cluster(
    cluster_client: MemoryClient, cluster: PrivateCluster, pg_database: str
) -> None:
    """The cold path (restore and append in one script), append_many, the settle after a
    drain and the memory guard each stay in one slot on every master."""
    client = cluster_client
    drainer = drainer_for(client)
    sessions = [f"f-{i}" for i in range(24)]
    appended: Appended = {}
    for session_id in sessions:
        for result in client.append_many(
            session_id, [{"role": "user", "content": f"{session_id} {i}"} for i in range(3)]
        ):
            appended[result.message_id] = (
                "default",
                session_id,
                result.seq,
                f"{session_id} {result.seq - 1}",
            )
    assert drainer.flush(timeout_s=60) == 0
    client.redis.flushdb()  # every master forgets every session
    for session_id in sessions:
        result = client.append(session_id, "user", f"{session_id} 3")
        appended[result.message_id] = ("default", session_id, result.seq, f"{session_id} 3")
    assert nodes_holding(
        client.redis, [client.keys.session("default", s).meta for s in sessions]
    ) == primaries(client.redis)
    assert drainer.memory.check() is False  # INFO memory of every primary: none is full
    assert drainer.flush(timeout_s=60) == 0
    assert_exactly_once(pg_database, appended)
    assert not any(
        client.redis.exists(client.keys.high_water(s)) for s in range(client.settings.shards)
    )
    assert_no_cross_slot(cluster)
