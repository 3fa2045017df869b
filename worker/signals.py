"""Celery signal handlers: fork safety."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from worker.runtime import reset_runtime


@worker_process_init.connect
def _fresh_clients_after_fork(**_kwargs: Any) -> None:
    reset_runtime()
