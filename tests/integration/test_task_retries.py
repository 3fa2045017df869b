"""Task retries in a real worker: backoff on the family's retry queue, then a dead letter."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from core.client import MemoryClient
from core.log import deadletters
from tests.integration.test_cli import memscribe
from worker import processes


@pytest.fixture
def retry_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(retry_base_ms=20, max_retries=3)


@pytest.fixture
def publisher(retry_settings: Settings) -> Celery:
    return Celery("test-publisher", config_source=celery_config(retry_settings))


@pytest.fixture
def flaky_worker(spawn: Callable[..., object], retry_settings: Settings) -> None:
    command = processes.celery_command(
        "worker",
        "-Q",
        "maintenance,maintenance.retry",
        "-c",
        "1",
        "-l",
        "INFO",
        "--without-mingle",
        "--without-gossip",
    )
    command[command.index("worker.app")] = "tests.helpers.flaky_app"
    spawn(command, settings=retry_settings, name="flaky-worker")


def _attempts(
    client: MemoryClient, label: str, count: int, timeout_s: float = 60
) -> list[tuple[float, str]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        logged = client.redis.lrange(f"test:flaky:{label}", 0, -1)
        if len(logged) >= count:
            return [(float(when), queue) for when, queue in (line.split(" ") for line in logged)]
        time.sleep(0.05)
    raise AssertionError(f"only {client.redis.llen(f'test:flaky:{label}')} attempts of {count}")


@pytest.mark.usefixtures("flaky_worker")
def test_transient_failures_retry_on_the_retry_queue(
    client: MemoryClient, publisher: Celery
) -> None:
    """Fails twice, succeeds third: retries came from maintenance.retry, no dead letter."""
    publisher.send_task("maintenance.flaky_probe", args=["twice", 2], queue="maintenance")
    attempts = _attempts(client, "twice", 3)
    assert [queue for _, queue in attempts] == [
        "maintenance",
        "maintenance.retry",
        "maintenance.retry",
    ]
    time.sleep(0.3)
    assert client.redis.llen("test:flaky:twice") == 3
    assert deadletters.list_dead_letters(client.redis, client.keys) == []


@pytest.mark.usefixtures("flaky_worker")
def test_exhausted_retries_become_a_replayable_dead_letter(
    client: MemoryClient, publisher: Celery, retry_settings: Settings
) -> None:
    """After 1 + max_retries runs: a dead letter (name, ids, error); replay runs it again."""
    publisher.send_task("maintenance.flaky_probe", args=["always", 100], queue="maintenance")
    _attempts(client, "always", 4)
    deadline = time.monotonic() + 30
    while not (letters := deadletters.list_dead_letters(client.redis, client.keys)):
        assert time.monotonic() < deadline, "no dead letter recorded"
        time.sleep(0.05)
    [letter] = letters
    assert letter.kind == "task" and letter.attempts == 4
    assert letter.detail == {
        "task": "maintenance.flaky_probe",
        "args": ["always", 100],
        "kwargs": {},
    }
    assert "attempt 4 fails on purpose" in letter.error
    assert client.redis.llen("test:flaky:always") == 4

    listed = json.loads(memscribe(retry_settings, "dlq", "list", "--json").stdout)
    assert [entry["id"] for entry in listed] == [letter.id]
    result = memscribe(retry_settings, "dlq", "replay", letter.id)
    assert result.returncode == 0, result.stdout + result.stderr
    _attempts(client, "always", 8)  # the replay ran it again, with its own retries
    deadline = time.monotonic() + 30
    while [entry.id for entry in deadletters.list_dead_letters(client.redis, client.keys)] in (
        [],
        [letter.id],
    ):
        assert time.monotonic() < deadline, "the replayed task was not dead-lettered again"
        time.sleep(0.05)
