"""The error hierarchy. Driver errors are translated at the edge into these.

- ``ValidationError``: bad input; goes back to the caller, nothing was written.
- ``TransientError``: the store or network may recover; retried with backoff.
- ``PermanentError``: this piece of data will never be accepted; dead-lettered.
"""

from __future__ import annotations


class MemscribeError(Exception):
    """Base class of every error memscribe raises on purpose."""


class ValidationError(MemscribeError, ValueError):
    """Input broke a documented rule. ``field`` names it; nothing was written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ConfigurationError(MemscribeError):
    """memscribe cannot start as configured (missing encoding, unreachable store, ...)."""


class TransientError(MemscribeError):
    """A failure worth retrying: connection refused, timeout, serialization failure."""


class PermanentError(MemscribeError):
    """A failure retrying cannot fix: the store rejects this data for its content."""


class ConflictError(MemscribeError):
    """A state write lost a race: the session's state changed since it was read.
    ``current_version`` is the version that won; reload and try again (``update_state``
    retries by itself up to ``MEMSCRIBE_STATE_UPDATE_RETRIES`` times before raising this)."""

    def __init__(self, message: str, *, current_version: int) -> None:
        super().__init__(message)
        self.current_version = current_version


class BackpressureError(TransientError):
    """Redis is too full of work not yet durable (WAL backlog, memory, or the tenant's quota):
    the append wrote nothing. Retry after ``retry_after_s``; ``reason`` says which limit."""

    def __init__(self, reason: str, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = retry_after_s


class ClearedError(MemscribeError):
    """The data this operation works on was cleared or erased meanwhile (core/erasure); its
    result is dropped, never written."""
