"""The ``llm`` family: summaries and memory consolidation. Thin: ids in, one core call out.

Tasks carry ids only (``[tenant, session_id]``), never message content or secrets: they show
up in Flower, logs and dead letters. Retries, backoff and dead letters come from
``tasks.base.family_task``; ``core.summaries.summarizer`` raises ``TransientError`` (with
``retry_after_s`` when the LLM sent ``Retry-After`` or another summarize holds the session)
and ``PermanentError``.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from core.client import Enqueue
from core.errors import ConfigurationError, PermanentError, ValidationError
from core.memories.lineage import due_subjects
from core.models import validate_id
from core.store.lease import Lease, alone
from core.store.scripts import lua_source
from core.summaries.budget import Budgets
from core.summaries.resend import stale_sessions
from tasks.base import family_task
from worker.runtime import runtime

log = logging.getLogger(__name__)


@family_task("llm.summarize")
def summarize(tenant: str, session_id: str) -> dict[str, Any]:
    """Fold the session's oldest unsummarized messages into its rolling summary.

    Sent by the drainer once a WAL entry that crossed the trigger is durable, or by
    ``MemoryClient.request_summary``. A duplicate (a replayed batch) finds nothing pending and
    returns without an LLM call.
    """
    try:
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        service = runtime().summarizer
    except (ValidationError, ConfigurationError) as exc:
        raise PermanentError(str(exc)) from None
    outcome = service.summarize(tenant, session_id)
    log.info(
        "summarize %s/%s: %s through seq %s (%s folded, llm %s)",
        tenant,
        session_id,
        outcome.status,
        outcome.covers_through_seq,
        outcome.folded_messages,
        "called" if outcome.llm_called else "not called",
    )
    return {"status": outcome.status, "covers_through_seq": outcome.covers_through_seq}


def send_summarize(tenant: str, session_id: str) -> None:
    """The one way workers ask for a summary (ids only). Apps use ``broker_enqueue``, which
    needs no worker code in their process."""
    summarize.apply_async(args=[tenant, session_id], queue="llm")


# Periodic lease (beat failover): llm.resume_deferred and llm.resend_stale run one at a time;
# an overlapping run (a slow one still going when the next tick arrives) skips. A run that
# outlives the lease only risks a duplicate summarize, which is a no-op.
PERIODIC_LEASE_MS = 60_000


def _periodic_lease(task: str) -> Lease:
    current = runtime()
    script = current.redis.register_script(lua_source("lease"))
    return Lease(current.redis, script, current.keys.periodic_lease(task), PERIODIC_LEASE_MS)


@family_task("llm.resume_deferred")
def resume_deferred() -> int:
    """Re-send the summaries a spent daily budget deferred, for tenants with room again (a new
    UTC day, or a raised budget). Meant for beat; safe to run often and concurrently (a
    duplicate summarize is a no-op)."""
    current = runtime()
    budgets = Budgets(current.redis, current.keys, current.settings)
    sent = 0
    with alone(_periodic_lease("llm.resume_deferred")) as mine:
        if not mine:
            log.info("llm.resume_deferred skipped: another run holds its lease")
            return 0
        for tenant, sessions in budgets.deferred().items():
            if budgets.usage(tenant).exhausted:
                continue
            for session_id in sessions:
                send_summarize(tenant, session_id)
                budgets.undefer(tenant, session_id)
                sent += 1
    return sent


@family_task("llm.resend_stale")
def resend_stale() -> int:
    """Send ``llm.summarize`` again for summaries pending longer than
    ``MEMSCRIBE_SUMMARY_RESEND_AFTER_S`` with no task running (its publish failed, or the task
    was lost). Meant for beat; a duplicate is a no-op."""
    current = runtime()
    budgets = Budgets(current.redis, current.keys, current.settings)
    with alone(_periodic_lease("llm.resend_stale")) as mine:
        if not mine:
            log.info("llm.resend_stale skipped: another run holds its lease")
            return 0
        stale = stale_sessions(
            current.redis, current.keys, budgets, after_s=current.settings.summary_resend_after_s
        )
        for tenant, session_id in stale:
            send_summarize(tenant, session_id)
    if stale:
        log.warning("re-sent %s summaries whose task was lost", len(stale))
    return len(stale)


# Subjects one llm.consolidate tick fans out at most; the rest wait for the next tick.
CONSOLIDATE_FAN_OUT = 1000


@family_task("llm.consolidate")
def consolidate() -> int:
    """Send ``llm.consolidate_subject`` for each subject with memories consolidation has not
    examined yet (at most ``CONSOLIDATE_FAN_OUT``). Meant for beat; a duplicate per-subject
    task finds the subject's lease held, or nothing left to examine."""
    current = runtime()
    due = due_subjects(current.engine, limit=CONSOLIDATE_FAN_OUT)
    for tenant, subject_id in due:
        consolidate_subject.apply_async(args=[tenant, subject_id], queue="llm")
    return len(due)


@family_task("llm.consolidate_subject")
def consolidate_subject(tenant: str, subject_id: str) -> dict[str, Any]:
    """One consolidation pass over one subject, under its lease (ids only in the arguments)."""
    try:
        validate_id("tenant", tenant)
        validate_id("subject_id", subject_id)
        consolidator = runtime().consolidator
    except (ValidationError, ConfigurationError) as exc:
        raise PermanentError(str(exc)) from None
    report = consolidator.consolidate_subject(tenant, subject_id)
    log.info("consolidate %s/%s: %s", tenant, subject_id, report.as_dict())
    return report.as_dict()


def broker_enqueue(settings: Settings) -> Enqueue:
    """A task sender for ``MemoryClient(enqueue=...)``: publishes to the configured broker.

    Only the broker is needed (no worker code runs in the app's process).
    """
    publisher = Celery(
        "memscribe-client", config_source=celery_config(settings), set_as_current=False
    )

    def send(name: str, args: list[str]) -> None:
        publisher.send_task(name, args=args, queue=name.split(".", 1)[0])

    return send
