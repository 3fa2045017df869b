"""Celery signal handlers that feed core/observability's metrics (multiprocess mode).

Connected by ``worker.app``. Samples are written only by the processes that configured the
metrics directory: a worker (its main process at ``worker_init``, its prefork children
inherit it) and beat (``beat_init``). Flower and apps that import ``worker.app`` never switch
prometheus-client to files, so their own metrics stay theirs.

Task counters carry the task's name and queue only: no hostname (series stay bounded under
worker churn) and never an argument.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery.signals import (
    after_task_publish,
    beat_init,
    task_failure,
    task_postrun,
    task_prerun,
    task_received,
    task_retry,
    task_success,
    worker_init,
    worker_process_shutdown,
    worker_shutdown,
)

from config.settings import get_settings
from core.observability import multiproc
from core.observability.metrics import worker_metrics

# Task results that say how a maintenance run went: task name -> job label.
JOBS = {
    "maintenance.purge_expired": "purge",
    "maintenance.erase": "erasure",
    "maintenance.backup": "backup",
}
_started: dict[str, float] = {}


@worker_init.connect
@beat_init.connect
def _write_samples_to_the_metrics_dir(**_kwargs: Any) -> None:
    multiproc.configure(get_settings().metrics_dir)


@worker_process_shutdown.connect
def _child_exited(pid: int | None = None, **_kwargs: Any) -> None:
    multiproc.process_dead(pid or os.getpid())


@worker_shutdown.connect
def _worker_exited(**_kwargs: Any) -> None:
    multiproc.process_dead(os.getpid())


def _queue(delivery_info: Any) -> str:
    info = delivery_info or {}
    return str(info.get("routing_key") or info.get("queue") or "unknown")


def _task_queue(task: Any) -> str:
    return _queue(getattr(task.request, "delivery_info", None))


@after_task_publish.connect
def _sent(sender: str | None = None, routing_key: str | None = None, **_kwargs: Any) -> None:
    if multiproc.is_configured() and sender:
        worker_metrics().task_sent.labels(name=sender, queue=routing_key or "unknown").inc()


@task_received.connect
def _received(request: Any = None, **_kwargs: Any) -> None:
    if multiproc.is_configured() and request is not None:
        queue = _queue(getattr(request, "delivery_info", None))
        worker_metrics().task_received.labels(name=request.name, queue=queue).inc()


@task_prerun.connect
def _started_now(task_id: str = "", task: Any = None, **_kwargs: Any) -> None:
    if multiproc.is_configured() and task is not None:
        _started[task_id] = time.perf_counter()
        worker_metrics().task_started.labels(name=task.name, queue=_task_queue(task)).inc()


@task_postrun.connect
def _finished(task_id: str = "", task: Any = None, **_kwargs: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        worker_metrics().task_runtime.labels(name=task.name, queue=_task_queue(task)).observe(
            time.perf_counter() - started
        )


@task_success.connect
def _succeeded(sender: Any = None, result: Any = None, **_kwargs: Any) -> None:
    if not multiproc.is_configured() or sender is None:
        return
    metrics = worker_metrics()
    metrics.task_succeeded.labels(name=sender.name, queue=_task_queue(sender)).inc()
    outcome = result if isinstance(result, dict) else {}
    if sender.name == "llm.summarize":
        metrics.summaries.labels(status=str(outcome.get("status", "unknown"))).inc()
    job = JOBS.get(sender.name)
    if job is not None:
        # purge and backup results say "ran"; an erasure always runs (its status says how far).
        ran = bool(outcome.get("ran", True))
        metrics.maintenance_runs.labels(job=job, outcome="ran" if ran else "skipped").inc()
        if ran:
            metrics.maintenance_last_success.labels(job=job).set(time.time())


@task_failure.connect
def _failed(sender: Any = None, **_kwargs: Any) -> None:
    if not multiproc.is_configured() or sender is None:
        return
    metrics = worker_metrics()
    metrics.task_failed.labels(name=sender.name, queue=_task_queue(sender)).inc()
    job = JOBS.get(sender.name)
    if job is not None:
        metrics.maintenance_runs.labels(job=job, outcome="failed").inc()


@task_retry.connect
def _retried(sender: Any = None, **_kwargs: Any) -> None:
    if multiproc.is_configured() and sender is not None:
        worker_metrics().task_retried.labels(name=sender.name, queue=_task_queue(sender)).inc()
