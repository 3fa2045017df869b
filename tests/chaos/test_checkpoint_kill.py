"""Fault: LangGraph checkpoints put from many threads while persist workers are killed with
SIGKILL mid-drain. Set check by checkpoint id: every put that returned is in PostgreSQL
exactly once (and nothing else is), each with its blob and its pending write, and a reader
sees the same newest checkpoint before and after Redis forgets the threads."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import sqlalchemy as sa
from langgraph.checkpoint.base.id import uuid6

from config.settings import Settings
from core.checkpoints.store import CheckpointStore
from core.client import MemoryClient
from core.errors import BackpressureError
from core.integrations.langgraph import MemscribeSaver
from core.store.db import make_engine
from tests.chaos.load import wait_until_durable
from worker import processes

Spawn = Callable[..., subprocess.Popen[bytes]]
THREADS = 6  # writer threads, each with its own LangGraph thread id
PUTS_PER_THREAD = 2000
KILLS = 3
PAUSE_S = 0.01  # 2,000 puts take > 20 s per writer: the load outlasts the kills


def _checkpoint(step: int) -> dict[str, Any]:
    return {
        "v": 1,
        "id": str(uuid6(clock_seq=-1)),
        "ts": "2026-12-04T00:00:00+00:00",
        "channel_values": {"messages": [f"step {step}"] * 3, "step": step},
        "channel_versions": {"messages": step + 1, "step": step + 1},
        "versions_seen": {},
        "pending_sends": [],
    }


class Writers:
    def __init__(self, saver: MemscribeSaver) -> None:
        self.saver = saver
        self.acknowledged: dict[str, list[str]] = {f"t{i}": [] for i in range(THREADS)}
        self.errors: list[str] = []
        self._threads = [
            threading.Thread(target=self._run, args=(thread,), daemon=True)
            for thread in self.acknowledged
        ]

    def _put(self, thread: str, step: int, parent: str | None) -> str:
        config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        if parent is not None:
            config["configurable"]["checkpoint_id"] = parent
        checkpoint = _checkpoint(step)
        versions = {"messages": step + 1}
        while True:
            try:
                stored = self.saver.put(
                    config, checkpoint, {"source": "loop", "step": step}, versions
                )  # type: ignore[arg-type]
                break
            except BackpressureError:
                time.sleep(0.05)  # refused before anything was written: safe to retry
        self.saver.put_writes(stored, [("out", f"wrote {step}")], task_id=f"task-{step}")
        return str(stored["configurable"]["checkpoint_id"])

    def _run(self, thread: str) -> None:
        parent = None
        try:
            for step in range(PUTS_PER_THREAD):
                parent = self._put(thread, step, parent)
                self.acknowledged[thread].append(parent)
                time.sleep(PAUSE_S)
        except Exception as exc:  # an ambiguous failure stops the writer and fails the test
            self.errors.append(f"{thread}: {exc.__class__.__name__}: {exc}")

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def count(self) -> int:
        return sum(len(ids) for ids in self.acknowledged.values())

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=120)


def _durable(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(sa.text("SELECT count(*) FROM checkpoints")).scalar_one())
    finally:
        engine.dispose()


def _rows(url: str, sql: str) -> list[Any]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql)))
    finally:
        engine.dispose()


def test_sigkilled_workers_lose_and_double_no_checkpoint(
    redis_client: redis.Redis,
    make_settings: Callable[..., Settings],
    spawn: Spawn,
    pg_database: str,
) -> None:
    settings = make_settings(
        drain_lease_ms=500, flush_interval_s=0.2, flush_budget_s=0.5, batch_size=100
    )
    engine = make_engine(settings.database_url)
    store = CheckpointStore(redis=redis_client, settings=settings, engine=lambda: engine)
    saver = MemscribeSaver(store=store, tenant="chaos")
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
    writers = Writers(saver)
    writers.start()
    at_kill = []
    for kill in range(KILLS):
        worker = spawn(
            processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
            settings=settings,
            name=f"worker-{kill}",
        )
        before = _durable(pg_database)
        deadline = time.monotonic() + 60
        while _durable(pg_database) <= before:  # kill once this worker has committed
            assert time.monotonic() < deadline, "the worker never drained"
            time.sleep(0.1)
        time.sleep(0.3)
        processes.kill(worker)
        at_kill.append((writers.count(), _durable(pg_database)))
    assert writers.count() < THREADS * PUTS_PER_THREAD, "the load ended before the last kill"
    writers.join()
    assert writers.errors == []
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
        settings=settings,
        name="worker-final",
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    assert wait_until_durable(client, timeout_s=90) == 0

    acknowledged = {
        (thread, checkpoint_id)
        for thread, ids in writers.acknowledged.items()
        for checkpoint_id in ids
    }
    assert len(acknowledged) == THREADS * PUTS_PER_THREAD
    stored = _rows(
        pg_database,
        "SELECT session_id, checkpoint_id, count(*) AS n FROM checkpoints "
        "WHERE tenant = 'chaos' GROUP BY session_id, checkpoint_id",
    )
    found = {(row.session_id, row.checkpoint_id) for row in stored}
    assert found - acknowledged == set(), "stored but never acknowledged"
    assert acknowledged - found == set(), "acknowledged but lost"
    assert all(row.n == 1 for row in stored)
    writes = _rows(
        pg_database,
        "SELECT session_id, checkpoint_id FROM checkpoint_writes WHERE tenant = 'chaos'",
    )
    assert {(row.session_id, row.checkpoint_id) for row in writes} == acknowledged
    assert len(writes) == len(acknowledged)

    # Redis forgets everything: the newest checkpoint of each thread comes from PostgreSQL.
    newest = {thread: ids[-1] for thread, ids in writers.acknowledged.items()}
    redis_client.flushdb()
    for thread, checkpoint_id in newest.items():
        found_tuple = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
        assert found_tuple is not None
        assert found_tuple.checkpoint["id"] == checkpoint_id
        assert found_tuple.checkpoint["channel_values"]["step"] == PUTS_PER_THREAD - 1
        assert found_tuple.pending_writes == [
            (f"task-{PUTS_PER_THREAD - 1}", "out", f"wrote {PUTS_PER_THREAD - 1}")
        ]
    engine.dispose()
    print(
        f"\ncheckpoint put x{len(acknowledged)} (+ as many put_writes) through kill -9 x{KILLS} "
        f"(acknowledged, durable at the kills: {at_kill}): lost=0 doubled=0"
    )
