"""RabbitMQ as the broker: a supervised worker and beat persist every append exactly once.

Runs on the machine's RabbitMQ (127.0.0.1:5672, guest/guest) in a vhost of the test's own,
created and deleted with rabbitmqctl, so parallel runs never share queues.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest
from celery import Celery
from kombu import Connection  # type: ignore[attr-defined]

from config.celery import QUEUES, celery_config, family_queues
from config.settings import Settings
from core.client import MemoryClient
from core.log import deadletters
from tests.chaos.load import append_concurrently, wait_until_durable
from tests.conftest import assert_exactly_once
from tests.integration.test_task_retries import _attempts
from worker import processes

SESSIONS = 100
MESSAGES = 6_000
APPENDERS = 3


def rabbitmqctl(*args: str) -> str:
    binary = shutil.which("rabbitmqctl")
    assert binary, "rabbitmqctl is needed for this test (RabbitMQ server)"
    done = subprocess.run(
        [binary, "-q", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"memscribe-test-{uuid.uuid4().hex[:12]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


def test_rabbitmq_broker_persists_everything_exactly_once(
    vhost: str,
    redis_client: object,
    make_settings: Callable[..., Settings],
    pg_database: str,
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """6,000 messages through AMQP (own vhost): the stored set equals the appended set, and
    the worker declared its queue and retry queue on the broker as durable queues."""
    settings = make_settings(broker_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
    config = celery_config(settings)
    # Redis-only transport options would mean nothing to AMQP: none are passed.
    assert config["broker_transport_options"] == {}
    assert (config["task_acks_late"], config["worker_prefetch_multiplier"]) == (True, 1)
    client = MemoryClient(redis=redis_client, settings=settings)  # type: ignore[arg-type]
    spawn(
        processes.supervised_worker_command(["persist"], concurrency=2, loglevel="INFO"),
        settings=settings,
        name="worker",
    )
    spawn(processes.supervised_beat_command(), settings=settings, name="beat")

    appended = append_concurrently(
        client,
        messages=MESSAGES,
        appenders=APPENDERS,
        sessions=SESSIONS,
        prefix="amqp",
        content="appender {index} says {i} over AMQP ✓",
    )
    assert wait_until_durable(client, timeout_s=90) == 0
    assert_exactly_once(pg_database, appended)

    listed = rabbitmqctl("list_queues", "-p", vhost, "name", "durable", "--no-table-headers")
    declared = dict(line.split("\t") for line in listed.strip().splitlines())
    # Celery's remote-control queue (<node>.celery.pidbox) is the only one of its own.
    durable = {name: flag for name, flag in declared.items() if not name.endswith(".pidbox")}
    consumed = family_queues("persist")
    assert set(consumed) <= set(durable) <= set(QUEUES), sorted(durable)
    assert all(durable[name] == "true" for name in consumed)
    with Connection(settings.broker_url) as connection:
        connection.ensure_connection(max_retries=1)  # the vhost answers for kombu too


def test_retries_use_the_family_retry_queue_on_rabbitmq(
    vhost: str,
    redis_client: object,
    make_settings: Callable[..., Settings],
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """A task failing twice runs again from maintenance.retry over AMQP (countdowns are held
    unacked by the worker: acks_late, prefetch 1), then succeeds with no dead letter."""
    settings = make_settings(
        broker_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}", retry_base_ms=20, max_retries=3
    )
    command = processes.worker_command(queues=family_queues("maintenance"), concurrency=1)
    command[command.index("worker.app")] = "tests.helpers.flaky_app"
    spawn(command, settings=settings, name="flaky-worker")
    client = MemoryClient(redis=redis_client, settings=settings)  # type: ignore[arg-type]
    publisher = Celery("test-publisher", config_source=celery_config(settings))
    publisher.send_task("maintenance.flaky_probe", args=["amqp", 2], queue="maintenance")
    attempts = _attempts(client, "amqp", 3)
    assert [queue for _, queue in attempts] == [
        "maintenance",
        "maintenance.retry",
        "maintenance.retry",
    ]
    assert deadletters.list_dead_letters(client.redis, client.keys) == []
