"""The ``persist`` family: drain the write-ahead log into the durable store."""

from __future__ import annotations

import logging
from typing import Any

from core.log.report import DrainReport
from tasks.base import family_task
from tasks.llm import send_summarize
from worker import progress
from worker.runtime import runtime

log = logging.getLogger(__name__)


def _after_pass(report: DrainReport) -> None:
    if report.batches:
        log.info(
            "flushed %s messages (%s replayed, %s dead-lettered) from shards %s",
            report.persisted,
            report.skipped,
            report.dead_lettered,
            sorted(report.shards),
        )
    # Sessions that crossed their summary trigger, now durable: one summary each. The task
    # carries ids only; it reads the messages itself.
    for tenant, session_id in sorted(report.summarize):
        try:
            send_summarize(tenant, session_id)
        except Exception as exc:  # the entries are durable and acked: the flush goes on
            # The session stays pending; llm.resend_stale asks again within minutes.
            log.warning("could not send llm.summarize for %s/%s: %s", tenant, session_id, exc)


@family_task("persist.flush")
def flush() -> dict[str, Any]:
    """Drain every shard with a backlog for one flush budget (beat runs this every second).

    Apps that want their saves pushed sooner can ``send_task("persist.flush")``: the WAL entry
    is the save request, so the task carries no arguments and no message content. While the
    durable store fails, entries stay in the WAL and the drainer backs off (``core.log.backoff``).
    """
    current = runtime()
    report = current.drainer.run_for(current.settings.flush_budget_s, on_report=_after_pass)
    # The supervisor's proof that this worker still consumes (worker/progress.py).
    progress.record(current.redis, current.settings, progress.Marker.FLUSH)
    return {"persisted": report.persisted, "error": report.error}
