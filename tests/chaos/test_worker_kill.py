"""Fault: drainers are killed with SIGKILL at random points, ten times, under load."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from core.client import MemoryClient
from tests.chaos.load import Appenders, wait_until_durable
from tests.conftest import ROOT, assert_commit_order, assert_exactly_once
from tests.integration.test_reclaim import _wait_ready
from worker import processes

KILLS = 10


@pytest.fixture
def chaos_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        drain_lease_ms=500, flush_interval_s=0.2, flush_budget_s=0.5, batch_size=100
    )


def test_sigkilled_workers_lose_and_double_nothing(
    redis_client: object,
    chaos_settings: Settings,
    spawn: Callable[..., object],
    tmp_path: Path,
    pg_database: str,
) -> None:
    """10 kill -9s (8 random Celery workers, 2 drainers stopped between commit and XACK)."""
    client = MemoryClient(redis=redis_client, settings=chaos_settings)  # type: ignore[arg-type]
    rng = random.Random(2026)
    spawn(processes.beat_command(loglevel="WARNING"), settings=chaos_settings, name="beat")
    committed_but_unacked = 0
    with Appenders(client) as load:
        for kill in range(KILLS):
            if kill in (3, 7):
                # Deterministic worst case: a drainer that committed its batch and died before
                # XACK. The replay after reclaim must insert nothing twice.
                doomed = spawn(
                    [sys.executable, str(ROOT / "tests/helpers/drain_then_hang.py"), "commit"],
                    settings=chaos_settings,
                    name=f"doomed-{kill}",
                )
                committed_but_unacked += _wait_ready(tmp_path / f"doomed-{kill}.log")
                processes.kill(doomed)  # type: ignore[arg-type]
                continue
            worker = spawn(
                processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
                settings=chaos_settings,
                name=f"worker-{kill}",
            )
            time.sleep(rng.uniform(1.0, 3.0))  # start-up takes about a second: kill mid-drain
            processes.kill(worker)  # type: ignore[arg-type]
        appended_during_kills = load.count()
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
        settings=chaos_settings,
        name="worker-final",
    )
    assert wait_until_durable(client, timeout_s=120) == 0
    written = load.acknowledged
    assert appended_during_kills > 1000 and committed_but_unacked > 0
    assert_exactly_once(pg_database, written)
    assert assert_commit_order(pg_database) >= 60  # every session's seqs committed in order
    print(f"\nworker kill -9 x{KILLS}: written={len(written)} lost=0 duplicated=0")
