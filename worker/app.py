"""The Celery app: ``celery -A worker.app worker -Q persist``."""

from __future__ import annotations

from celery import Celery

import worker.signals  # noqa: F401  (registers the fork-safety handlers)
from config.celery import celery_config
from config.settings import get_settings
from worker import telemetry  # noqa: F401  (Prometheus metrics: core/observability)

app = Celery(
    "memscribe",
    include=["tasks.persist", "tasks.llm", "tasks.retention", "tasks.erasure", "tasks.backups"],
)
app.config_from_object(celery_config(get_settings()))
