"""Thin Celery tasks of core/backups (family maintenance)."""

from __future__ import annotations

from typing import Any

from core.backups.service import run_backup, run_prune
from tasks.base import family_task
from worker.runtime import runtime

# A backup of a large store outlasts the default task limit; a killed one leaves no manifest.
BACKUP_TIME_LIMIT_S = 6 * 3600


@family_task(
    "maintenance.backup",
    time_limit=BACKUP_TIME_LIMIT_S,
    soft_time_limit=BACKUP_TIME_LIMIT_S - 60,
)
def backup() -> dict[str, Any]:
    """One scheduled backup (beat, every ``MEMSCRIBE_BACKUP_INTERVAL_S``): full or incremental
    as ``MEMSCRIBE_BACKUP_FULL_EVERY`` says. No arguments; a second tick of the same interval,
    or one that finds a backup running, skips and says so. The result holds counts only."""
    current = runtime()
    report = run_backup(
        redis=current.redis, engine=current.engine, settings=current.settings, scheduled=True
    )
    return report.as_dict()


@family_task("maintenance.prune_backups", time_limit=3600, soft_time_limit=3540)
def prune_backups() -> dict[str, Any]:
    """Keep the newest ``MEMSCRIBE_BACKUP_KEEP_FULL`` full backups and what depends on them;
    remove orphaned objects and expired key-store exports."""
    current = runtime()
    return run_prune(redis=current.redis, settings=current.settings).as_dict()
