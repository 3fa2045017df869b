"""Redis errors as memscribe's errors, in one place.

Connection failures and timeouts are ``TransientError`` (safe to retry); a Redis that refuses
writes because it is full (``OOM`` under ``noeviction``) or whose scripts report a limit
(``BACKPRESSURE``, ``QUOTA``) is ``BackpressureError`` (retryable, after a pause); replies that
mean "not now" (``LOADING``, ``BUSY``, ``READONLY``, ``TRYAGAIN``, ``CLUSTERDOWN``,
``MASTERDOWN``) are ``TransientError``. Anything else is a bug or a misconfiguration and stays
a ``redis.ResponseError``, never a silent success.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.errors import BackpressureError, TransientError, ValidationError

# redis-py parses these codes into classes of their own (and drops the code from the text).
_NOT_NOW = (
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.MasterDownError,
)


def translate(exc: redis.RedisError) -> Exception:
    """The memscribe error for a redis-py error (the error itself when there is none)."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):  # LOADING is one too
        return TransientError(f"Redis unavailable: {exc}")
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return BackpressureError("memory", f"Redis is out of memory (noeviction): {exc}")
    if isinstance(exc, _NOT_NOW):
        return TransientError(f"Redis is not ready: {exc.__class__.__name__}: {exc}")
    if not isinstance(exc, redis.ResponseError):
        return exc
    text = str(exc)
    code, _, rest = text.partition(" ")
    if code == "SUBJECT":
        return ValidationError("subject_id", rest)
    if code == "BACKPRESSURE":
        reason, _, detail = rest.partition(" ")
        return BackpressureError(reason, f"append refused, Redis is {reason}-bound: {detail}")
    if code == "QUOTA":
        return BackpressureError("quota", f"append refused: {rest}")
    if code == "BUSY":  # a script runs past lua-time-limit
        return TransientError(f"Redis is busy: {text}")
    return exc


@contextmanager
def redis_errors() -> Iterator[None]:
    """Translate redis-py errors raised inside the block (see ``translate``)."""
    try:
        yield
    except redis.RedisError as exc:
        translated = translate(exc)
        if translated is exc:
            raise
        raise translated from None
