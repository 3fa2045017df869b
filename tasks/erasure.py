"""Thin Celery tasks of core/erasure (family maintenance)."""

from __future__ import annotations

import logging
from typing import Any

from core.erasure.job import ErasureJob
from core.errors import PermanentError, ValidationError
from core.models import validate_id
from tasks.base import family_task
from worker.runtime import runtime

log = logging.getLogger(__name__)


@family_task("maintenance.erase")
def erase(receipt_id: str) -> dict[str, Any]:
    """Delete what an erasure's request made residue, and complete its receipt. Carries the
    receipt id only: never a subject id (it would show in the broker, Flower and dead
    letters). Idempotent: a completed receipt is returned as it is."""
    try:
        validate_id("receipt_id", receipt_id)
    except ValidationError as exc:
        raise PermanentError(str(exc)) from None
    current = runtime()
    job = ErasureJob(redis=current.redis, engine=current.engine, settings=current.settings)
    receipt = job.run(receipt_id)
    log.info("erasure %s: %s", receipt.receipt_id, receipt.status)
    return {"receipt_id": receipt.receipt_id, "status": receipt.status}
