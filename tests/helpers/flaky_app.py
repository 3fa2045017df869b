"""The product's Celery app plus one test task that fails on purpose a given number of times.

Run as ``celery -A tests.helpers.flaky_app worker``: the retry policy, retry queues and dead
letters under test are the product's own (tasks.base.family_task).
"""

from __future__ import annotations

import time

from celery import current_task

from core.errors import TransientError
from tasks.base import family_task
from worker.app import app
from worker.runtime import runtime

__all__ = ["app"]


@family_task("maintenance.flaky_probe")
def flaky_probe(label: str, failures: int) -> str:
    """Log the attempt (time, queue it came from); fail transiently the first ``failures``."""
    queue = (current_task.request.delivery_info or {}).get("routing_key", "")
    attempt = runtime().redis.rpush(f"test:flaky:{label}", f"{time.time()} {queue}")
    if attempt <= failures:
        raise TransientError(f"attempt {attempt} fails on purpose")
    return "ok"
