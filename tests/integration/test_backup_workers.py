"""Backups by real Celery workers: on beat into moto's S3 server (two beats, one backup per
slot, then a restore drill), and a worker killed with SIGKILL in the middle of a backup."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import Settings
from core.backups import load_catalog, open_target, run_backup, run_prune
from core.backups.target import target_from_settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from core.log.repository import MessageRow, persist_messages
from core.store.keys import Keys
from tasks.llm import broker_enqueue
from tests.helpers.backup_data import differences, seed, table_rows
from tests.helpers.moto_s3 import moto_s3
from tests.integration.test_backups import _restore, fresh_url  # noqa: F401 (fixture)
from worker import processes

BUCKET = "memscribe-beat"
INTERVAL_S = 4.0


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


def _wait(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_worker_backs_up_to_s3_on_beat_once_per_slot_and_the_drill_restores_it(
    client: MemoryClient,
    drainer: Drainer,
    make_settings: Callable[..., Settings],
    database_url: str,
    spawn: Any,
    s3_endpoint: str,
    fresh_url: Callable[[str], str],  # noqa: F811
) -> None:
    """Two beats and a maintenance worker for ~14 s: at most one backup per 4 s slot, all in
    S3; the newest restores into a fresh database with 0 differences."""
    seed(client, drainer)
    settings = make_settings(
        database_url=database_url,
        backup_url=f"s3://{BUCKET}/beat-{uuid.uuid4().hex[:8]}",
        s3_endpoint_url=s3_endpoint,
        backup_interval_s=INTERVAL_S,
        backup_prune_interval_s=3600.0,
        backup_part_size_bytes=5 * 1024 * 1024,
    )
    target = target_from_settings(settings)
    worker = processes.worker_command(["maintenance"], concurrency=2, loglevel="INFO")
    spawn(worker, settings=settings, name="worker")
    started = time.monotonic()
    for n in range(2):
        spawn(processes.beat_command(loglevel="INFO"), settings=settings, name=f"beat{n}")

    _wait(lambda: len(load_catalog(target).manifests) >= 3, timeout_s=45, what="3 backups")
    elapsed = time.monotonic() - started
    catalog = load_catalog(target)

    # One of the two beats sends (worker/leader.py), and the backup's own slot claim would
    # stop a second tick regardless: one backup per slot means about elapsed / interval.
    assert len(catalog.manifests) <= elapsed / INTERVAL_S + 1
    kinds = [m.kind for m in reversed(catalog.newest_first())]
    assert kinds[0] == "full" and "incremental" in kinds
    latest = catalog.newest_first()[0]
    source = table_rows(database_url)
    restored_url = fresh_url("beat")
    report = _restore(settings, latest.id, restored_url)
    assert report["chain"] == latest.chain
    assert differences(source, table_rows(restored_url)) == []


def _bulk_messages(engine: Any, count: int) -> None:
    now = datetime.now(UTC)
    rows = [
        MessageRow(
            message_id=f"bulk-{n}",
            tenant="default",
            session_id=f"bulk-{n // 100}",
            seq=n % 100 + 1,
            role="user",
            content=f"bulk message {n} " + "x" * 200,
            tokens=50,
            metadata=None,
            created_at=now + timedelta(microseconds=n),
        )
        for n in range(count)
    ]
    for start in range(0, count, 5000):
        persist_messages(engine, rows[start : start + 5000])


def test_a_worker_killed_mid_backup_leaves_no_backup_and_the_next_run_succeeds(
    client: MemoryClient,
    make_settings: Callable[..., Settings],
    database_url: str,
    spawn: Any,
    tmp_path: Path,
) -> None:
    """SIGKILL during maintenance.backup: no manifest, nothing listed; the next run backs up
    everything, and prune removes the orphaned objects."""
    _bulk_messages(client.engine, 60_000)
    settings = make_settings(
        database_url=database_url,
        backup_url=f"file://{tmp_path / 'backups'}",
        backup_batch_rows=200,
        backup_lease_s=3.0,
    )
    worker = spawn(
        processes.worker_command(["maintenance"], concurrency=1, loglevel="INFO"),
        settings=settings,
        name="worker",
    )
    lease = Keys.of(settings).backup_lease()
    broker_enqueue(settings)("maintenance.backup", [])
    objects = tmp_path / "backups" / "backups"
    _wait(
        lambda: client.redis.exists(lease) and any(objects.rglob("*messages*")),
        timeout_s=60,
        what="the backup to reach the messages table",
    )
    processes.kill(worker)
    target = open_target(settings.backup_url)

    killed = load_catalog(target)
    assert killed.manifests == {} and len(killed.orphans()) == 1

    _wait(lambda: not client.redis.exists(lease), timeout_s=10, what="the lease to expire")
    report = run_backup(redis=client.redis, engine=client.engine, settings=settings)
    pruned = run_prune(redis=client.redis, settings=settings)

    assert report.ran and report.backup["total_rows"] >= 60_000
    after = load_catalog(target)
    assert list(after.manifests) == [report.backup["id"]]
    assert pruned.orphans == list(killed.orphans())
    assert after.orphans() == {}
    leftovers = [p.name for p in (tmp_path / "backups").rglob("*") if p.name.endswith(".partial")]
    assert leftovers == []
