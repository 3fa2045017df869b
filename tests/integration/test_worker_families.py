"""Workers per family with real Celery: the llm pool autoscales under a burst of summaries and
shrinks back, and SIGTERM of a persist worker mid-drain is a warm shutdown that loses and
duplicates nothing."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from sqlalchemy.engine import Engine

from config.settings import Settings
from core.client import MemoryClient
from core.log.status import shard_status
from core.summaries import store as summary_store
from tests.chaos.load import Appended, append_concurrently, wait_until_durable
from tests.conftest import assert_exactly_once
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.supervised import celery_child, children, wait_for_log
from worker import processes
from worker.families import warm_shutdown_bound_s

SettingsFactory = Callable[..., Settings]
Spawn = Callable[..., subprocess.Popen[bytes]]

SESSIONS = 200
# The acceptance bound: an idle pool is back at its minimum within 2 minutes of the burst.
SHRINK_BOUND_S = 120.0


def wait_for(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")


def backlog(client: MemoryClient) -> int:
    return sum(s.backlog for s in shard_status(client.redis, client.keys))


def supervised_family(family: str, *, stop_timeout_s: float) -> list[str]:
    """``memscribe worker <family>``: its pool, queues and limits from the settings."""
    return processes.memscribe_command(
        "worker", family, "-l", "INFO", "--stop-timeout", str(stop_timeout_s)
    )


def cross_trigger_once(client: MemoryClient, session: str) -> int:
    """Append to ``session`` until one append crosses the summary trigger; returns how many."""
    for i in range(1, 50):
        text = f"m-{session}-{i} Alice paid {i} euros for the tickets to Lisbon and back."
        if client.append(session, "user", text).summary_triggered:
            return i
    raise AssertionError(f"{session} never crossed the summary trigger")


def summaries_per_session(engine: Engine, sessions: list[str]) -> dict[str, int]:
    return {
        session: len(summary_store.list_summaries(engine, tenant="default", session_id=session))
        for session in sessions
    }


def test_llm_pool_grows_to_max_under_a_burst_and_shrinks_back(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    """200 llm.summarize at once: the pool grows to 4 (MEMSCRIBE_LLM_AUTOSCALE=4,1), is back
    at 1 within 2 minutes, every session is summarized exactly once, no WorkerLostError."""
    fake_openai.latency_s = 0.3  # so tasks overlap and the reserved queue outgrows the pool
    settings = make_settings(
        database_url=pg_database,
        summarizer="openai",  # a keyless OpenAI-compatible server: no secret in the env
        openai_base_url=fake_openai.url,
        summary_trigger_tokens=60,
        keep_recent_tokens=10,
        llm_autoscale="4,1",
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    spawn(processes.worker_command(["persist"], concurrency=1), settings=settings, name="persist")
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
    # No llm worker yet: every crossing's llm.summarize waits in the llm queue.
    sessions = [f"burst-{i}" for i in range(SESSIONS)]
    for session in sessions:
        cross_trigger_once(client, session)
    assert wait_until_durable(client, timeout_s=60) == 0

    supervisor = spawn(supervised_family("llm", stop_timeout_s=20), settings=settings, name="llm")
    celery = celery_child(supervisor)
    sizes: list[int] = []

    def pool_size() -> int:
        sizes.append(len(children(celery)))
        return sizes[-1]

    wait_for(lambda: pool_size() >= 4, timeout_s=90, what="the pool to grow to 4")
    fake_openai.wait_for_requests(SESSIONS, timeout_s=180)
    wait_for(
        lambda: summaries_per_session(client.engine, sessions) == dict.fromkeys(sessions, 1),
        timeout_s=60,
        what="every summary committed",
    )
    burst_over = time.monotonic()
    wait_for(lambda: pool_size() == 1, timeout_s=SHRINK_BOUND_S, what="the pool to shrink to 1")
    assert time.monotonic() - burst_over < SHRINK_BOUND_S
    assert max(sizes) == 4, "never above MAX"

    # Exactly once: one LLM call and one summary per session; nothing sent twice.
    assert len(fake_openai.requests()) == SESSIONS
    assert summaries_per_session(client.engine, sessions) == dict.fromkeys(sessions, 1)
    log = (tmp_path / "llm.log").read_text(errors="replace")
    assert "Scaling up" in log and "Scaling down" in log
    assert "WorkerLostError" not in log
    # The shrunk pool still works, and the supervisor's SIGTERM stops it warm (celery #2682:
    # autoscale with prefork lost processes on SIGTERM).
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    log = (tmp_path / "llm.log").read_text(errors="replace")
    assert "Warm shutdown" in log and "WorkerLostError" not in log
    client.engine.dispose()


def test_sigterm_mid_drain_exits_in_bound_and_loses_nothing(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    """SIGTERM to `memscribe worker persist` while 20,000 messages drain: it exits warm within
    flush_budget_s + margin; a new worker drains the rest; every message is stored once."""
    settings = make_settings(
        database_url=pg_database, persist_concurrency=1, batch_size=500, max_wal_backlog=0
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    stop_timeout_s = 60.0  # far above the bound: the exit below is the warm one, not SIGKILL
    first = spawn(
        supervised_family("persist", stop_timeout_s=stop_timeout_s),
        settings=settings,
        name="persist-1",
    )
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
    wait_for_log(tmp_path / "persist-1.log", "ready.", timeout_s=60)

    appended: Appended = {}

    def append() -> None:
        appended.update(
            append_concurrently(client, messages=20_000, appenders=4, sessions=200, prefix="warm")
        )

    appender = threading.Thread(target=append)
    appender.start()
    # Mid-drain: a backlog that the worker is visibly reducing.
    previous = [0]

    def draining() -> bool:
        now, before = backlog(client), previous[0]
        previous[0] = now
        return now > 500 and 0 < now < before

    wait_for(lambda: backlog(client) > 2_000, timeout_s=60, what="a backlog")
    wait_for(draining, timeout_s=60, what="the backlog to fall")
    began = time.monotonic()
    first.send_signal(signal.SIGTERM)
    status = first.wait(timeout=stop_timeout_s + 10)
    took_s = time.monotonic() - began
    assert status == 0, "a warm exit (Celery's status), not the supervisor's SIGKILL"
    assert took_s < warm_shutdown_bound_s(settings), f"took {took_s:.1f}s"
    log = (tmp_path / "persist-1.log").read_text(errors="replace")
    assert "Warm shutdown" in log and "did not stop in" not in log

    appender.join(timeout=120)
    assert len(appended) == 20_000
    spawn(supervised_family("persist", stop_timeout_s=20), settings=settings, name="persist-2")
    assert wait_until_durable(client, timeout_s=180) == 0
    assert_exactly_once(pg_database, appended)
    client.engine.dispose()
