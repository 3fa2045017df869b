"""How every task family retries, declared once, and what happens when it gives up.

A task raises ``TransientError`` to be retried: exponential backoff with full jitter, capped,
at most ``max_retries`` times, on the family's retry queue (``<family>.retry``). A task that
raises ``PermanentError``, or runs out of retries, is recorded in the task dead-letter stream
with its name, arguments (ids only: tasks never carry message content) and error.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import shared_task

from config.settings import Settings
from core.errors import PermanentError, TransientError
from core.log import deadletters
from worker.runtime import runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    family: str
    max_retries: int
    base_s: float
    cap_s: float

    @property
    def retry_queue(self) -> str:
        return f"{self.family}.retry"

    def countdown(self, retries: int, *, at_least_s: float = 0.0) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retries)]; never below ``at_least_s``
        (a server's Retry-After)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** min(retries, 40))
        return max(at_least_s, random.uniform(0, ceiling))


# Per family: the cap of its backoff (seconds), before the global MEMSCRIBE_RETRY_CAP_S.
FAMILY_CAPS_S = {"persist": 60.0, "llm": 300.0, "maintenance": 600.0}


def policy(family: str, settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        family=family,
        max_retries=settings.max_retries,
        base_s=settings.retry_base_ms / 1000,
        cap_s=min(FAMILY_CAPS_S[family], settings.retry_cap_s),
    )


def family_task(name: str, **options: Any) -> Callable[[Callable[..., Any]], Any]:
    """Declare a task of the family named by the first part of ``name`` ("llm.summarize")."""
    family = name.split(".", 1)[0]

    def decorate(function: Callable[..., Any]) -> Any:
        def run(task: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except TransientError as exc:
                rule = policy(family, runtime().settings)
                retries = task.request.retries
                if retries >= rule.max_retries:
                    _dead_letter(task, args, kwargs, exc, runs=retries + 1)
                    raise
                countdown = rule.countdown(retries, at_least_s=getattr(exc, "retry_after_s", 0.0))
                log.warning("%s retry %s in %.3fs: %s", name, retries + 1, countdown, exc)
                raise task.retry(
                    exc=exc,
                    countdown=countdown,
                    queue=rule.retry_queue,
                    max_retries=rule.max_retries,
                ) from None
            except PermanentError as exc:
                _dead_letter(task, args, kwargs, exc, runs=task.request.retries + 1)
                raise

        run.__doc__ = function.__doc__
        run.__name__ = function.__name__
        return shared_task(name=name, bind=True, ignore_result=True, **options)(run)

    return decorate


def _dead_letter(
    task: Any, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception, *, runs: int
) -> None:
    current = runtime()
    dead_id = deadletters.record_task(
        current.redis,
        current.keys,
        task=task.name,
        args=list(args),
        kwargs=kwargs,
        error=f"{exc.__class__.__name__}: {exc}",
        runs=runs,
    )
    log.error("%s gave up after %s runs (dead letter %s): %s", task.name, runs, dead_id, exc)
