"""Celery's autoscaler with its keepalive from the settings (``MEMSCRIBE_AUTOSCALE_KEEPALIVE_S``).

Celery reads ``AUTOSCALE_KEEPALIVE`` from the environment once, at import; a setting keeps the
one configuration path (and shows in ``memscribe`` docs). The keepalive is both how long a
grown pool stays grown after its last task arrived and how often the event loop checks, so an
idle pool is back at its minimum within twice the keepalive.
"""

from __future__ import annotations

from typing import Any

from celery.worker.autoscale import Autoscaler as CeleryAutoscaler

from config.settings import get_settings


class Autoscaler(CeleryAutoscaler):  # type: ignore[misc]
    """``worker_autoscaler`` of memscribe's app (config/celery.py)."""

    def __init__(
        self,
        pool: Any,
        max_concurrency: int,
        min_concurrency: int = 0,
        worker: Any = None,
        keepalive: float | None = None,
        mutex: Any = None,
    ) -> None:
        super().__init__(
            pool,
            max_concurrency,
            min_concurrency,
            worker=worker,
            keepalive=keepalive or get_settings().autoscale_keepalive_s,
            mutex=mutex,
        )
