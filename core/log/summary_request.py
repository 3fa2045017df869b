"""``request_summary()``: mark a session pending (``summary_request.lua``), send
``llm.summarize``, and take the mark back if the send fails."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.log import context as session_context
from core.log.appender import Appender
from core.store.keys import SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

SUMMARIZE_TASK = "llm.summarize"


def request(
    scripts: Scripts,
    appender: Appender,
    keys: SessionKeys,
    *,
    enqueue: Callable[[str, list[str]], None],
    pending_ms: int,
) -> bool:
    """True when this call marked the session and sent the task; False when a summary was
    already pending or the session is unknown."""
    stamp = _mark(scripts, keys, "request", pending_ms=pending_ms)
    if stamp == -1 and session_context.read(scripts, appender, keys)[0].from_durable_store:
        # Redis had forgotten the session: the read re-warmed it, so ask again.
        stamp = _mark(scripts, keys, "request", pending_ms=pending_ms)
    if stamp <= 0:
        return False
    try:
        enqueue(SUMMARIZE_TASK, [keys.tenant, keys.session_id])
    except Exception:
        # Not sent: take the mark back, or the session would wait for the pending timeout.
        _mark(scripts, keys, "cancel", pending_ms=pending_ms, stamp=stamp)
        raise
    return True


def _mark(scripts: Scripts, keys: SessionKeys, op: str, *, pending_ms: int, stamp: int = 0) -> int:
    with redis_errors():
        reply = scripts.summary_request(
            keys=[keys.meta, keys.summary_pending],
            args=[op, time.time_ns() // 1_000_000, pending_ms, keys.member, stamp],
        )
    return int(reply)
