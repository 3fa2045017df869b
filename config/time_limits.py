"""Time limits per task family, applied as Celery task annotations.

Celery has one global ``task_time_limit``; a flush that should give up within a minute and a
backup that may run for hours cannot share it. ``task_annotations`` sets attributes on task
classes by name, but Celery's dict form matches exact names only, so this annotation object
matches the family (the part of the name before the first dot: ``persist.flush`` ->
``persist``).
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings

# The soft limit (SoftTimeLimitExceeded inside the task, so it can clean up) comes this much
# before the hard one (the pool process is killed).
SOFT_RATIO = 0.9


def soft_limit_s(hard_s: int) -> int:
    """The soft time limit that goes with a hard one: 90 %, at least a second below it."""
    return max(1, min(int(hard_s * SOFT_RATIO), hard_s - 1))


def family_time_limits(settings: Settings) -> dict[str, dict[str, int]]:
    """``{family: {"time_limit": s, "soft_time_limit": s}}`` from the settings."""
    hard = {
        "persist": settings.persist_time_limit_s,
        "llm": settings.llm_time_limit_s,
        "maintenance": settings.maintenance_time_limit_s,
    }
    return {
        family: {"time_limit": limit_s, "soft_time_limit": soft_limit_s(limit_s)}
        for family, limit_s in hard.items()
    }


class FamilyTimeLimits:
    """A ``task_annotations`` entry: each family's limits, for tasks that set none of their
    own. Celery applies annotations over the task's class attributes, so without that check
    the family value would override ``maintenance.backup``'s own six-hour limit."""

    def __init__(self, limits: dict[str, dict[str, int]]) -> None:
        self.limits = limits

    def annotate(self, task: Any) -> dict[str, int] | None:
        family = str(getattr(task, "name", "") or "").split(".", 1)[0]
        limits = self.limits.get(family)
        if limits is None:
            return None
        # Celery copies the global task_time_limit onto every task class before annotating,
        # so a limit other than the global one is the task's own (family_task(...,
        # time_limit=...)): deliberate, kept.
        conf = task.app.conf
        globals_ = {
            "time_limit": conf.task_time_limit,
            "soft_time_limit": conf.task_soft_time_limit,
        }
        if any(getattr(task, key, None) not in (None, value) for key, value in globals_.items()):
            return None
        return dict(limits)

    def annotate_any(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"FamilyTimeLimits({self.limits!r})"
