"""Periodic tasks without a lease of their own take a short one (tasks/llm.py): two
overlapping runs of llm.resend_stale or llm.resume_deferred, and one of them skips."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from config.settings import Settings
from core.store.keys import Keys
from tasks import llm
from worker import runtime

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def in_process_runtime(
    redis_client: redis.Redis, make_settings: SettingsFactory
) -> Iterator[Settings]:
    """The task runtime of this process, built from the test settings."""
    settings = make_settings()
    runtime._current = runtime.Runtime(settings=settings)
    yield settings
    runtime._current.redis.close()
    runtime._current = None


@pytest.mark.parametrize(
    ("task", "work"),
    [(llm.resend_stale, "stale_sessions"), (llm.resume_deferred, "Budgets.deferred")],
)
def test_an_overlapping_run_skips(
    task: Any,
    work: str,
    redis_client: redis.Redis,
    in_process_runtime: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While one run is inside its work, a second run does none, says it skipped, and leaves
    the first run's lease alone; once the first ends, the next run works again."""
    inside, go_on = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow_work(*_args: Any, **_kwargs: Any) -> Any:
        calls.append(threading.current_thread().name)
        inside.set()
        assert go_on.wait(timeout=30)
        return [] if work == "stale_sessions" else {}

    if work == "stale_sessions":
        monkeypatch.setattr(llm, "stale_sessions", slow_work)
    else:
        monkeypatch.setattr(llm.Budgets, "deferred", slow_work)
    results: dict[str, Any] = {}
    first = threading.Thread(target=lambda: results.update(first=task()), name="first")
    first.start()
    assert inside.wait(timeout=30)
    lease_key = Keys.of(in_process_runtime).periodic_lease(task.name)
    holder = redis_client.get(lease_key)
    assert holder

    with caplog.at_level(logging.INFO, logger="tasks.llm"):
        assert task() == 0
    assert calls == ["first"]
    assert f"{task.name} skipped" in caplog.text
    assert redis_client.get(lease_key) == holder

    go_on.set()
    first.join(timeout=30)
    assert results == {"first": 0}
    assert redis_client.get(lease_key) is None  # released by its holder
    task()
    assert len(calls) == 2
