"""Fault: the Celery worker (or beat) dies or stops consuming; `memscribe worker`/`beat` bring
it back, and every acknowledged append is still stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from core.client import MemoryClient
from tests.chaos.load import Appenders, wait_until_durable
from tests.conftest import assert_exactly_once, settings_env
from tests.helpers.supervised import alive, celery_child, count_in_log, wait_for_log
from worker import processes, progress

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def fast_settings(make_settings: Callable[..., Settings], pg_database: str) -> Settings:
    # Stall window: 6 intervals of 0.5 s plus the 1 s flush budget = 4 s; checked every second.
    return make_settings(worker_stall_intervals=6, worker_check_interval_s=1.0)


def _start(
    spawn: Spawn, settings: Settings, *, stop_timeout_s: float = 3
) -> tuple[subprocess.Popen[bytes], ...]:
    worker = spawn(
        processes.supervised_worker_command(
            ["persist"], concurrency=1, loglevel="INFO", stop_timeout_s=stop_timeout_s
        ),
        settings=settings,
        name="worker",
    )
    beat_command = processes.supervised_beat_command(stop_timeout_s=stop_timeout_s)
    beat = spawn(beat_command, settings=settings, name="beat")
    return worker, beat


def test_a_worker_that_exits_is_restarted(
    redis_client: object, fast_settings: Settings, spawn: Spawn, tmp_path: Path, pg_database: str
) -> None:
    """kill -9 of the Celery main process: the supervisor starts a new one, which drains."""
    client = MemoryClient(redis=redis_client, settings=fast_settings)  # type: ignore[arg-type]
    worker, _beat = _start(spawn, fast_settings)
    first = celery_child(worker)
    with Appenders(client, threads=2) as load:
        time.sleep(2)
        os.kill(first, signal.SIGKILL)
        wait_for_log(tmp_path / "worker.log", "exited (status -9); restart 1", timeout_s=15)
        time.sleep(2)
    assert wait_until_durable(client, timeout_s=60) == 0
    assert celery_child(worker) != first and worker.poll() is None
    assert load.count() > 300
    assert_exactly_once(pg_database, load.acknowledged)


def test_a_worker_that_stops_consuming_is_restarted(
    redis_client: object, fast_settings: Settings, spawn: Spawn, tmp_path: Path, pg_database: str
) -> None:
    """A worker alive but not consuming (SIGSTOP) while a backlog waits is replaced after the
    stall window; a worker with nothing to do is left alone."""
    client = MemoryClient(redis=redis_client, settings=fast_settings)  # type: ignore[arg-type]
    worker, _beat = _start(spawn, fast_settings)
    frozen = celery_child(worker)
    wait_for_log(tmp_path / "worker.log", "ready.", timeout_s=30)
    time.sleep(fast_settings.worker_stall_after_s + 2)  # idle for a whole window: no restart
    assert count_in_log(tmp_path / "worker.log", "stalled") == 0
    os.kill(frozen, signal.SIGSTOP)
    with Appenders(client, threads=2) as load:
        time.sleep(2)
    assert progress.backlog(client.redis, fast_settings) > 0
    wait_for_log(tmp_path / "worker.log", "stalled (status", timeout_s=30)
    assert wait_until_durable(client, timeout_s=60) == 0
    assert not alive(frozen) and celery_child(worker) != frozen
    assert_exactly_once(pg_database, load.acknowledged)


def test_beat_that_stops_ticking_is_restarted(
    redis_client: object, fast_settings: Settings, spawn: Spawn, tmp_path: Path
) -> None:
    """Beat alive but sending nothing (SIGSTOP) is replaced after the stall window."""
    _worker, beat = _start(spawn, fast_settings)
    frozen = celery_child(beat)
    wait_for_log(tmp_path / "beat.log", "beat: Starting", timeout_s=30)
    os.kill(frozen, signal.SIGSTOP)
    wait_for_log(tmp_path / "beat.log", "beat stalled (status", timeout_s=30)
    assert not alive(frozen)
    new = celery_child(beat)
    assert new != frozen
    deadline = time.monotonic() + 20
    client = MemoryClient(redis=redis_client, settings=fast_settings)  # type: ignore[arg-type]
    client.redis.delete(progress.marker_key(fast_settings, progress.Marker.BEAT))
    while not progress.recent(client.redis, fast_settings, progress.Marker.BEAT):
        assert time.monotonic() < deadline, "the new beat sent no tick"
        time.sleep(0.2)


def test_sigterm_is_a_warm_shutdown_of_the_whole_tree(
    redis_client: object, fast_settings: Settings, spawn: Spawn, tmp_path: Path
) -> None:
    """SIGTERM to `memscribe worker` is forwarded: Celery shuts down warm, nothing is left."""
    # Room for a warm shutdown on a busy machine (it waits for the running flush).
    worker, beat = _start(spawn, fast_settings, stop_timeout_s=20)
    wait_for_log(tmp_path / "worker.log", "ready.", timeout_s=30)
    celery = celery_child(worker)
    pool = [int(p) for p in Path(f"/proc/{celery}/task/{celery}/children").read_text().split()]
    assert pool, "the Celery worker has no pool process"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0  # 0: Celery's own exit status, not a SIGKILL (137)
    assert "Warm shutdown" in (tmp_path / "worker.log").read_text()
    assert not any(alive(pid) for pid in [celery, *pool])
    # SIGKILL of the supervisor takes its child with it (PR_SET_PDEATHSIG): no orphan beat.
    beat_child = celery_child(beat)
    os.killpg(beat.pid, signal.SIGKILL)
    beat.wait(timeout=10)
    deadline = time.monotonic() + 10
    while alive(beat_child):
        assert time.monotonic() < deadline, "beat outlived its supervisor"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["worker", "--autoscale", "1,8"], "--autoscale"),
        (["worker", "--autoscale", "eight"], "--autoscale"),
        (["worker", "--families", "persist,nope"], "--families"),
        (["worker", "-Q", "persist,other"], "--queues"),
        (["worker", "-c", "0"], "--concurrency"),
        (["beat", "--stop-timeout", "-1"], "--stop-timeout"),
    ],
)
def test_bad_worker_options_are_refused_before_anything_starts(
    args: list[str], field: str, fast_settings: Settings
) -> None:
    """A bad option exits 2 with a message naming it, and no Celery process is started."""
    done = subprocess.run(
        processes.memscribe_command(*args),
        env={**os.environ, **settings_env(fast_settings)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and field in done.stderr, done.stderr
    assert "starting worker" not in done.stderr
