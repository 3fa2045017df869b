"""Workers per queue family: what ``memscribe worker persist|llm|maintenance`` runs.

Each family has its own pool from the settings (``MEMSCRIBE_PERSIST_CONCURRENCY``,
``MEMSCRIBE_LLM_AUTOSCALE`` or ``MEMSCRIBE_LLM_CONCURRENCY``, ``MEMSCRIBE_MAINTENANCE_CONCURRENCY``)
and consumes its queue and its ``.retry`` queue; its time limits are in the Celery
configuration (config/time_limits.py), so the plain ``celery -A worker.app worker -Q ...``
command gets the same ones. ``--families``, ``-Q``, ``-c`` and ``--autoscale`` override.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from config.celery import FAMILIES, family_queues
from config.settings import Settings
from worker import processes

# Celery's own part of a warm shutdown (stop consuming, hand prefetched tasks back to the
# broker, join the pool), on top of the flush in flight; measured at 1-3 s, with room for a
# loaded machine.
WARM_SHUTDOWN_MARGIN_S = 10.0


def warm_shutdown_bound_s(settings: Settings) -> float:
    """How long a persist worker takes to exit after SIGTERM: the flush in flight returns
    within ``flush_budget_s`` (the drainer stops taking batches then), plus Celery's margin.
    The supervisor's ``--stop-timeout`` SIGKILLs the group after that regardless; safe,
    because an unacked WAL entry stays pending and the next drainer reclaims it."""
    return settings.flush_budget_s + WARM_SHUTDOWN_MARGIN_S


@dataclass(frozen=True)
class WorkerPlan:
    """One worker's queues, pool and node name."""

    family: str  # whose settings chose the pool: the first family consumed
    queues: list[str]
    concurrency: int
    autoscale: tuple[int, int] | None  # (max, min) processes; None: a fixed pool
    name: str  # node name; "@host" is added when missing

    def command(self, *, loglevel: str = "INFO", hostname: str | None = None) -> list[str]:
        """The ``celery -A worker.app worker`` argv of this plan."""
        name = self.name if "@" in self.name else f"{self.name}@{hostname or socket.gethostname()}"
        return processes.worker_command(
            queues=self.queues,
            concurrency=self.concurrency,
            autoscale=self.autoscale,
            name=name,
            loglevel=loglevel,
        )


def family_pool(settings: Settings, family: str) -> tuple[int, tuple[int, int] | None]:
    """(concurrency, autoscale) of ``family`` from the settings."""
    if family == "persist":
        return settings.persist_concurrency, None
    if family == "llm":
        return settings.llm_concurrency, settings.llm_autoscale_range
    if family == "maintenance":
        return settings.maintenance_concurrency, None
    raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def plan(
    settings: Settings,
    *,
    family: str | None = None,
    families: Sequence[str] | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int | None = None,
    autoscale: tuple[int, int] | None = None,
    name: str | None = None,
) -> WorkerPlan:
    """The worker for ``family`` (or ``families``, or exact ``queues``; persist when none is
    given), its pool from the settings unless ``concurrency`` or ``autoscale`` is given."""
    picked = [family] if family else list(families or [])
    consumed = list(queues or []) or [q for f in picked or ["persist"] for q in family_queues(f)]
    first = (picked or [consumed[0].split(".", 1)[0]])[0]
    pool_size, scale = family_pool(settings, first)
    if concurrency is not None or autoscale is not None:
        pool_size, scale = concurrency or pool_size, autoscale
    return WorkerPlan(
        family=first,
        queues=consumed,
        concurrency=pool_size,
        autoscale=scale,
        name=name or first,
    )


def plan_from_args(settings: Settings, args: argparse.Namespace) -> WorkerPlan:
    """The plan of a parsed ``memscribe worker`` command line (worker/run.py)."""
    return plan(
        settings,
        family=args.family,
        families=args.families,
        queues=args.queues,
        concurrency=args.concurrency,
        autoscale=args.autoscale,
        name=args.name,
    )
