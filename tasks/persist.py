"""The ``persist`` family: drain the write-ahead log into the durable store."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from celery import shared_task

from core.errors import TransientError
from worker.runtime import runtime

log = logging.getLogger(__name__)


@shared_task(name="persist.flush", ignore_result=True)
def flush() -> dict[str, Any]:
    """Drain every shard with a backlog, within the flush budget (beat runs this every second).

    Apps that want their saves pushed sooner can ``send_task("persist.flush")``: the WAL entry
    is the save request, so the task carries no arguments and no message content.
    """
    try:
        report = runtime().drainer.drain_all()
    except TransientError as exc:
        # Entries stay pending in the WAL; the next tick (or a reclaim) picks them up again.
        log.warning("flush stopped early, will resume: %s", exc)
        return {"error": str(exc)}
    if report.batches:
        log.info(
            "flushed %s messages (%s replayed, %s dead-lettered) from shards %s",
            report.persisted,
            report.skipped,
            report.dead_lettered,
            sorted(report.shards),
        )
    return asdict(report)
