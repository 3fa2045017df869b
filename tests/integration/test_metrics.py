"""Prometheus metrics: a real persist worker writes samples, `memscribe metrics` serves them."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from core.client import MemoryClient
from core.log.status import shard_status
from core.observability.collector import LIVE_GAUGES
from core.observability.metrics import exported_names
from core.observability.server import Exporter
from tasks.llm import broker_enqueue
from tests.conftest import SettingsFactory
from worker import processes
from worker.observe import flush_marker

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[list[str], Samples]:
    """The series lines of /metrics (no '#' lines) and their values by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    samples: Samples = {}
    for line in lines:
        match = SAMPLE.match(line)
        assert match, line
        labels = frozenset(LABEL.findall(match.group(2) or ""))
        samples[(match.group(1), labels)] = float(match.group(3))
    return lines, samples


def total(samples: Samples, metric: str, **labels: str) -> float:
    """The sum of ``metric`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == metric and wanted <= ls)


def by_shard(samples: Samples, name: str) -> dict[int, float]:
    return {int(dict(ls)["shard"]): v for (n, ls), v in samples.items() if n == name}


@pytest.fixture
def metrics_settings(make_settings: SettingsFactory, pg_database: str, tmp_path: Path) -> Settings:
    """Settings whose metrics directory is this test's own."""
    return make_settings(database_url=pg_database, metrics_dir=str(tmp_path / "metrics"))


@pytest.fixture
def exporter(metrics_settings: Settings, redis_client: Any) -> Iterator[Exporter]:
    """`memscribe metrics` in-process, on a free port."""
    server = Exporter(
        metrics_settings, host="127.0.0.1", port=0, flush_marker_key=flush_marker(metrics_settings)
    )
    server.start()
    yield server
    server.stop()


def wait_for(
    check: Callable[[], bool], *, timeout_s: float, what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise AssertionError(f"timed out waiting for {what}\n{tail}")
        time.sleep(0.2)


def persist_worker(spawn: Any, settings: Settings, name: str) -> Any:
    command = processes.worker_command(["persist"], concurrency=1, loglevel="WARNING", name=name)
    return spawn(command, settings=settings, name=name)


@pytest.mark.slow
def test_backlog_rises_then_drains_and_counters_match(
    metrics_settings: Settings, redis_client: Any, exporter: Exporter, spawn: Any
) -> None:
    """5,000 appends: the backlog gauges equal `shard_status`; a worker drains them, counted."""
    client = MemoryClient(redis=redis_client, settings=metrics_settings)
    for i in range(5000):
        client.append(f"s-{i % 100}", "user", f"message {i}")
    _, before = scrape(exporter.port)
    status = shard_status(redis_client, client.keys)
    assert total(before, "memscribe_wal_backlog") == 5000
    assert by_shard(before, "memscribe_wal_backlog") == {s.shard: s.backlog for s in status}
    assert by_shard(before, "memscribe_wal_length") == {s.shard: s.length for s in status}
    assert total(before, "memscribe_up") == 1
    assert total(before, "memscribe_drained_messages_total") == 0

    persist_worker(spawn, metrics_settings, "persist-a")
    send = broker_enqueue(metrics_settings)

    def drained() -> bool:
        send("persist.flush", [])
        return sum(s.backlog for s in shard_status(redis_client, client.keys)) == 0

    wait_for(drained, timeout_s=120, what="the backlog to drain")
    # The flush that drained the last entry has returned once its success is counted.
    wait_for(
        lambda: total(scrape(exporter.port)[1], "memscribe_drained_messages_total") == 5000,
        timeout_s=30,
        what="the drained counter to reach 5,000",
    )
    flushes = {"name": "persist.flush", "queue": "persist"}
    wait_for(
        lambda: total(scrape(exporter.port)[1], "celery_task_succeeded_total", **flushes) >= 1,
        timeout_s=30,
        what="a flush to succeed",
    )
    lines, after = scrape(exporter.port)
    assert total(after, "memscribe_wal_backlog") == 0
    assert total(after, "memscribe_drained_messages_total", outcome="persisted") == 5000
    assert total(after, "memscribe_drain_batch_size_sum") == 5000
    assert total(after, "memscribe_drain_batch_duration_seconds_count") >= 1
    assert total(after, "celery_task_received_total", **flushes) >= 1
    assert total(after, "celery_task_started_total", **flushes) >= 1
    assert total(after, "celery_task_succeeded_total", **flushes) >= 1
    assert total(after, "celery_task_runtime_count", **flushes) >= 1
    # celery-exporter's names, bounded labels: no hostname, worker or pid on any series.
    label_names = {name for line in lines for name, _ in LABEL.findall(line)}
    # Every series is one docs/observability.md lists (the dashboard test checks against it).
    served = {name for name, _ in after}
    assert served <= exported_names(tuple(LIVE_GAUGES)), served - exported_names(tuple(LIVE_GAUGES))
    assert set(LIVE_GAUGES) - {"memscribe_backup_last_success_timestamp_seconds"} <= served
    assert label_names <= {"name", "queue", "le", "shard", "kind", "outcome", "status", "job"}


@pytest.mark.slow
def test_twenty_worker_restarts_add_no_series(
    metrics_settings: Settings, redis_client: Any, exporter: Exporter, spawn: Any, tmp_path: Path
) -> None:
    """Start a worker, let it flush once, stop it, 20 times: the series count stays put."""
    client = MemoryClient(redis=redis_client, settings=metrics_settings)
    send = broker_enqueue(metrics_settings)
    counts = []
    for run in range(20):
        for i in range(10):
            client.append(f"s-{i}", "user", f"run {run} message {i}")
        worker = persist_worker(spawn, metrics_settings, f"persist-{run}")

        sent_at = [0.0]

        def flushed(run: int = run, sent_at: list[float] = sent_at) -> bool:
            # One flush at a time (every 5 s at most): flushes left queued would keep the
            # next worker busy.
            if time.monotonic() - sent_at[0] > 5:
                send("persist.flush", [])
                sent_at[0] = time.monotonic()
            done = total(
                scrape(exporter.port)[1], "memscribe_drained_messages_total", outcome="persisted"
            )
            return done == 10 * (run + 1)

        log = Path(tmp_path) / f"persist-{run}.log"
        wait_for(flushed, timeout_s=120, what=f"run {run} to flush", log=log)
        processes.stop(worker, timeout_s=15)
        assert worker.returncode is not None
        counts.append(len(scrape(exporter.port)[0]))
    assert counts[1:] == [counts[1]] * 19, counts
    files = list(Path(metrics_settings.metrics_dir).glob("*.db"))
    assert files  # the workers wrote their samples where the exporter reads them


def test_maintenance_and_summary_outcomes_are_counted(
    metrics_settings: Settings, redis_client: Any, exporter: Exporter, spawn: Any
) -> None:
    """A purge run and a summarize with nothing to do are counted by job and by status."""
    command = processes.worker_command(
        ["maintenance", "llm"], concurrency=1, loglevel="WARNING", name="maint"
    )
    spawn(command, settings=metrics_settings, name="maint")
    send = broker_enqueue(metrics_settings)
    send("maintenance.purge_expired", [])
    send("llm.summarize", ["default", "no-such-session"])

    def counted() -> bool:
        samples = scrape(exporter.port)[1]
        return (
            total(samples, "memscribe_maintenance_runs_total", job="purge") >= 1
            and total(samples, "memscribe_summaries_total") >= 1
        )

    wait_for(counted, timeout_s=60, what="the purge and the summarize to be counted")
    _, samples = scrape(exporter.port)
    assert total(samples, "memscribe_maintenance_runs_total", job="purge", outcome="ran") == 1
    last = total(samples, "memscribe_maintenance_last_success_timestamp_seconds", job="purge")
    assert abs(last - time.time()) < 120
    assert total(samples, "memscribe_summaries_total") == 1
    assert total(samples, "memscribe_llm_calls_total") == 0
    purge = {"name": "maintenance.purge_expired", "queue": "maintenance"}
    assert total(samples, "celery_task_succeeded_total", **purge) == 1
    summarize = {"name": "llm.summarize", "queue": "llm"}
    assert total(samples, "celery_task_succeeded_total", **summarize) == 1
