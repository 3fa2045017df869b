"""Acceptance: a real Celery worker and beat persist 20,000 messages from 4 appenders."""

from __future__ import annotations

import time

import pytest

from config.settings import Settings
from core.client import MemoryClient
from core.log.status import shard_status
from tests.chaos.load import append_concurrently
from tests.conftest import (
    assert_commit_order,
    assert_exactly_once,
    both_backends,
    messages_in_store,
)
from worker import processes

SESSIONS = 200
MESSAGES = 20_000
APPENDERS = 4


@pytest.mark.slow
@both_backends
def test_worker_and_beat_persist_everything_exactly_once(
    client: MemoryClient, settings: Settings, spawn: object, database_url: str
) -> None:
    """20,000 messages, 200 sessions, 4 appenders: the stored set equals the appended set."""
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),  # type: ignore[operator]
        settings=settings,
        name="worker",
    )
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")  # type: ignore[operator]

    appended = append_concurrently(
        client,
        messages=MESSAGES,
        appenders=APPENDERS,
        sessions=SESSIONS,
        prefix="chat",
        content="appender {index} says {i}: \t tabs, \\ backslashes, ünïcode ✓\n",
    )

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if sum(s.backlog for s in shard_status(client.redis, client.keys)) == 0:
            break
        time.sleep(0.2)
    assert len(messages_in_store(database_url)) == MESSAGES
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url)
