"""Thin Celery tasks of core/retention (family maintenance)."""

from __future__ import annotations

from typing import Any

from core.retention.purge import purge_expired as run_purge
from tasks.base import family_task
from worker.runtime import runtime


@family_task("maintenance.purge_expired")
def purge_expired() -> dict[str, Any]:
    """Delete what retention says is due (beat, every ``MEMSCRIBE_PURGE_INTERVAL_S``).

    No arguments; a run that finds another holding the purge lease skips and says so. The
    result and the log hold counts only.
    """
    current = runtime()
    report = run_purge(redis=current.redis, engine=current.engine, settings=current.settings)
    return report.as_dict()
