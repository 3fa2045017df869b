"""Redis Cluster end to end: real Celery workers and beat with MEMSCRIBE_REDIS_CLUSTER=true
(the broker on a plain Redis), the set check on the write-behind, summaries that cross the
trigger on every master, and the read-through of summarized sessions once their keys are gone.
Every log the workers write is searched for a cross-slot error afterwards."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from config.settings import Settings
from core.client import MemoryClient
from core.log.status import shard_status
from core.summaries import store as summary_store
from tests.chaos.load import append_concurrently
from tests.cluster.conftest import assert_no_cross_slot, keys_per_primary, nodes_holding, primaries
from tests.conftest import assert_exactly_once, messages_in_store
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.private_cluster import PrivateCluster
from tests.integration.test_summarize_workers import (
    echo_markers,
    markers_in_context,
    quiet,
    wait_for,
)
from worker import processes

Spawn = Callable[..., Any]
SESSIONS = 160
MESSAGES = 20_000
APPENDERS = 4


def backlog(client: MemoryClient) -> int:
    return sum(status.backlog for status in shard_status(client.redis, client.keys))


def test_workers_and_beat_persist_everything_exactly_once_on_a_cluster(
    cluster_client: MemoryClient,
    cluster_settings: Settings,
    cluster: PrivateCluster,
    spawn: Spawn,
    pg_database: str,
    tmp_path: Path,
) -> None:
    """20,000 messages, 160 sessions over 16 shards on 3 masters, 4 appenders, a prefork worker
    and beat: the stored set equals the appended set, seq 1..n per session."""
    client = cluster_client
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="INFO"),
        settings=cluster_settings,
        name="worker",
    )
    spawn(processes.beat_command(loglevel="INFO"), settings=cluster_settings, name="beat")

    appended = append_concurrently(
        client,
        messages=MESSAGES,
        appenders=APPENDERS,
        sessions=SESSIONS,
        prefix="chat",
        content="appender {index} says {i}: ünïcode ✓",
    )
    wait_for(lambda: backlog(client) == 0, timeout_s=120, what="the WAL backlog to drain")

    assert len(messages_in_store(pg_database)) == MESSAGES
    assert_exactly_once(pg_database, appended)
    sessions = {row[1] for row in appended.values()}
    metas = [client.keys.session("default", session).meta for session in sessions]
    assert nodes_holding(client.redis, metas) == primaries(client.redis)
    assert all(count > 0 for count in keys_per_primary(client.redis).values())
    assert "flushed" in (tmp_path / "worker.log").read_text(), "the worker did the draining"
    assert_no_cross_slot(cluster, tmp_path)


def test_summaries_cross_the_trigger_on_every_master_and_read_through(
    make_cluster_settings: Callable[..., Settings],
    cluster_client: MemoryClient,
    cluster: PrivateCluster,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    """48 sessions cross the trigger twice each: LLM calls == crossings, summaries chain, no
    acknowledged message is missing from summary + context(); then every session loses its
    keys and reads its latest summary back through PostgreSQL."""
    fake_openai.reply = echo_markers
    settings = make_cluster_settings(
        summarizer="openai",  # a keyless OpenAI-compatible server: no secret in the env
        openai_base_url=fake_openai.url,
        summary_trigger_tokens=100,
        keep_recent_tokens=30,
        buffer_max_messages=10_000,
        buffer_max_tokens=10_000_000,
        retry_base_ms=20,
    )
    client = MemoryClient(redis=cluster_client.redis, settings=settings)
    spawn(
        processes.worker_command(["persist"], concurrency=1, loglevel="INFO"),
        settings=settings,
        name="persist",
    )
    spawn(
        processes.worker_command(["llm"], concurrency=2, loglevel="INFO"),
        settings=settings,
        name="llm",
    )
    spawn(processes.beat_command(loglevel="INFO"), settings=settings, name="beat")

    sessions = [f"chat-{i}" for i in range(48)]
    metas = [client.keys.session("default", session).meta for session in sessions]
    assert nodes_holding(client.redis, metas) == primaries(client.redis)
    acked: dict[str, list[str]] = {session: [] for session in sessions}
    crossed = dict.fromkeys(sessions, 0)
    i = 0
    while active := [s for s in sessions if crossed[s] < 2]:
        for session in active:
            marker = f"m-0-{i}"
            i += 1
            result = client.append(session, "user", f"{marker} Alice paid {i} euros.")
            acked[session].append(marker)
            crossed[session] += result.summary_triggered
        time.sleep(0.05)  # a chat's pace: the first summary commits while the session goes on
    wait_for(lambda: quiet(client), timeout_s=90, what="summaries to settle")

    assert len(fake_openai.requests()) == sum(crossed.values())
    for session, markers in acked.items():
        rows = summary_store.list_summaries(client.engine, tenant="default", session_id=session)
        assert len(rows) == crossed[session]
        assert [r.from_seq for r in rows] == [1] + [r.covers_through_seq + 1 for r in rows[:-1]]
        found, context = markers_in_context(client, session)
        assert (context.summary, context.covers_through_seq) == (
            rows[-1].text,
            rows[-1].covers_through_seq,
        )
        assert sorted(found) == sorted(markers)

    own = [key for session in sessions for key in client.keys.session("default", session).own()]
    client.redis.delete(*own)
    for session, markers in acked.items():
        found, cold = markers_in_context(client, session)
        assert cold.from_durable_store
        assert sorted(found) == sorted(markers)
        rows = summary_store.list_summaries(client.engine, tenant="default", session_id=session)
        assert (cold.summary, cold.covers_through_seq) == (
            rows[-1].text,
            rows[-1].covers_through_seq,
        )
    client.engine.dispose()
    assert_no_cross_slot(cluster, tmp_path)
