"""Fault: the broker is killed with SIGKILL and restarted, again and again, under load, with the
supervised worker and beat (`memscribe worker`, `memscribe beat`).

Every broker here is the test's own: a private redis-server (AOF, everysec) that is both data
Redis and broker, or a private RabbitMQ node on its own ports. Never the machine's.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from core.client import MemoryClient, redis_from_url
from tests.chaos.load import Appended, Appenders, wait_until_durable
from tests.conftest import assert_exactly_once
from tests.helpers.private_rabbit import PrivateRabbit
from tests.helpers.private_redis import PrivateRedis
from tests.helpers.supervised import count_in_log
from worker import processes

FSYNC_WINDOW_S = 1.0  # appendfsync everysec
REDIS_RESTARTS = 5
RABBIT_RESTARTS = 3
APPEND_S = 3.0

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_rabbit(tmp_path: Path) -> Iterator[PrivateRabbit]:
    node = PrivateRabbit(tmp_path / "rabbit")
    try:
        node.start()
        yield node
    finally:
        node.close()


def _supervised(spawn: Spawn, settings: Settings) -> None:
    spawn(
        processes.supervised_worker_command(["persist"], concurrency=2, stop_timeout_s=5),
        settings=settings,
        name="worker",
    )
    spawn(processes.supervised_beat_command(stop_timeout_s=5), settings=settings, name="beat")


def _restarts_seen(tmp_path: Path) -> str:
    worker, beat = tmp_path / "worker.log", tmp_path / "beat.log"
    return (
        f"worker restarts {count_in_log(worker, '; restart ')} "
        f"(crashed: {count_in_log(worker, 'Unrecoverable error')}), "
        f"beat restarts {count_in_log(beat, '; restart ')}"
    )


def test_five_redis_restarts_in_a_row_lose_nothing_older_than_the_fsync_window(
    private_redis: PrivateRedis,
    make_settings: Callable[..., Settings],
    pg_database: str,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    """5x kill -9 + restart of Redis (data and broker): every acked append older than the fsync
    window is stored exactly once, and the supervised worker drains the rest."""
    settings = make_settings(
        redis_url=private_redis.url(0),
        broker_url=private_redis.url(1),
        worker_stall_intervals=6,
        worker_check_interval_s=1.0,
    )
    client = MemoryClient(redis=redis_from_url(settings.redis_url), settings=settings)
    _supervised(spawn, settings)
    written: Appended = {}
    for _ in range(REDIS_RESTARTS):
        with Appenders(client) as load:
            time.sleep(APPEND_S)
        assert load.count() > 300, f"only {load.count()} appends acknowledged in {APPEND_S}s"
        written |= load.acknowledged
        # Nothing is appended in the last window before the crash, so every acknowledged
        # append is older than the fsync window: the promise under test.
        time.sleep(FSYNC_WINDOW_S * 2)
        private_redis.kill()
        time.sleep(1)
        private_redis.start()  # replays the AOF
    with Appenders(client) as after:
        time.sleep(APPEND_S)
    written |= after.acknowledged
    # Only the supervised worker drains: a zero backlog with every row stored proves it (or
    # its replacement) consumes again after the last restart.
    assert wait_until_durable(client, timeout_s=60) == 0, _restarts_seen(tmp_path)
    assert_exactly_once(pg_database, written)
    print(f"\nredis kill -9 x{REDIS_RESTARTS}: written={len(written)} lost=0 duplicated=0; ")
    print(_restarts_seen(tmp_path))


def test_three_rabbitmq_restarts_in_a_row_lose_nothing(
    private_rabbit: PrivateRabbit,
    redis_client: object,
    make_settings: Callable[..., Settings],
    pg_database: str,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    """3x kill -9 + restart of a private RabbitMQ node (the broker; data Redis stays up) while
    appends go on: everything acknowledged is stored exactly once."""
    settings = make_settings(
        broker_url=private_rabbit.url(), worker_stall_intervals=6, worker_check_interval_s=1.0
    )
    client = MemoryClient(redis=redis_client, settings=settings)  # type: ignore[arg-type]
    _supervised(spawn, settings)
    took: list[float] = []
    with Appenders(client) as load:
        for _ in range(RABBIT_RESTARTS):
            time.sleep(APPEND_S)
            private_rabbit.kill()
            time.sleep(1)
            took.append(private_rabbit.start())
        time.sleep(APPEND_S)
    assert load.count() > 1000 and load.failed == 0  # appends never touch the broker
    assert wait_until_durable(client, timeout_s=60) == 0, _restarts_seen(tmp_path)
    assert_exactly_once(pg_database, load.acknowledged)
    print(
        f"\nrabbitmq kill -9 x{RABBIT_RESTARTS} (node up again in "
        f"{', '.join(f'{t:.1f}s' for t in took)}): written={len(load.acknowledged)} lost=0 "
        f"duplicated=0; {_restarts_seen(tmp_path)}"
    )
