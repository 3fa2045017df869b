"""The retention policy: how long each kind of data is kept, per tenant (docs/retention.md).

Defaults come from ``Settings.retention_*_s``; ``Settings.retention_tenants`` overrides any
kind for a tenant. 0 means keep forever. Writers stamp ``expires_at`` from here when a row is
written; the purge deletes rows past it. Redis TTLs are clamped here too, so no Redis copy
outlives the durable row it mirrors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, func

if TYPE_CHECKING:
    from config.settings import Settings

# One kind per priority for memories, in priority order (1 LOW .. 4 CRITICAL).
MEMORY_KINDS: Final = ("memories_low", "memories_medium", "memories_high", "memories_critical")
KINDS: Final = ("messages", "summaries", *MEMORY_KINDS, "state", "dead_letters", "usage")
# Below a minute a Redis TTL would be clamped under append's own floor (session_ttl_s >= 60);
# above 100 years a datetime could overflow.
MIN_S: Final = 60
MAX_S: Final = 100 * 365 * 24 * 3600
# The charset of core.models' ids (a tenant in a key can neither collide nor glob).
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


def _check_seconds(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer number of seconds, got {value!r}")
    if value != 0 and not MIN_S <= value <= MAX_S:
        raise ValueError(
            f"{name}: must be 0 (keep forever) or {MIN_S}..{MAX_S} seconds, got {value}"
        )
    return value


def defaults_of(settings: Settings) -> dict[str, int]:
    """The deployment's default retention per kind (``MEMSCRIBE_RETENTION_<KIND>_S``)."""
    return {kind: int(getattr(settings, f"retention_{kind}_s")) for kind in KINDS}


def check_settings(settings: Settings) -> None:
    """Refuse retention settings out of range, naming the field and the limit."""
    for kind, value in defaults_of(settings).items():
        _check_seconds(f"retention_{kind}_s", value)
    for tenant, kinds in settings.retention_tenants.items():
        where = f"retention_tenants[{tenant!r}]"
        if not isinstance(tenant, str) or not _TENANT.fullmatch(tenant):
            raise ValueError(f"{where}: not a valid tenant id (1-128 of A-Z a-z 0-9 . _ @ + -)")
        if not isinstance(kinds, Mapping):
            raise ValueError(f"{where}: must be an object of kind -> seconds")
        for kind, value in kinds.items():
            if kind not in KINDS:
                raise ValueError(f"{where}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
            _check_seconds(f"{where}.{kind}", value)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Retention per tenant and kind, with the lookups writers and the purge need."""

    defaults: Mapping[str, int]
    tenants: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    # (tenant or "", kind) -> timedelta | None, filled lazily: the drainer asks once per row,
    # so the lookup must cost a dict probe, not a merge of mappings.
    _deltas: dict[tuple[str, str], timedelta | None] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, settings: Settings) -> RetentionPolicy:
        return cls(defaults_of(settings), dict(settings.retention_tenants))

    def seconds(self, tenant: str, kind: str) -> int:
        """The tenant's retention of ``kind`` in seconds (0: forever)."""
        own = self.tenants.get(tenant)
        if own is not None and kind in own:
            return int(own[kind])
        return int(self.defaults[kind])

    def delta(self, tenant: str, kind: str) -> timedelta | None:
        key = (tenant, kind)
        try:
            return self._deltas[key]
        except KeyError:
            seconds = self.seconds(tenant, kind)
            found = timedelta(seconds=seconds) if seconds else None
            self._deltas[key] = found
            return found

    def expires_at(self, tenant: str, kind: str, written_at: datetime) -> datetime | None:
        """When a row of ``kind`` written at ``written_at`` expires (None: never)."""
        delta = self.delta(tenant, kind)
        return None if delta is None else written_at + delta

    def memory_kind(self, priority: int) -> str:
        """The kind of a memory of ``priority`` (1 LOW .. 4 CRITICAL)."""
        return MEMORY_KINDS[min(max(int(priority), 1), 4) - 1]

    def redis_ttl_s(self, tenant: str, ttl_s: int, *kinds: str) -> int:
        """``ttl_s`` clamped to the tenant's shortest finite retention among ``kinds``: a Redis
        copy never lives longer than the durable rows it mirrors may."""
        for kind in kinds:
            seconds = self.seconds(tenant, kind)
            if seconds and seconds < ttl_s:
                ttl_s = seconds
        return ttl_s

    def session_ttl_s(self, tenant: str, ttl_s: int) -> int:
        """The Redis TTL of a session of ``tenant`` (its buffer, summary, meta): ``ttl_s``
        clamped to how long its messages and summaries are kept."""
        return self.redis_ttl_s(tenant, ttl_s, "messages", "summaries")

    def shared_seconds(self, kind: str) -> int:
        """For data shared by tenants (the dead-letter streams): the shortest finite retention
        of any tenant, so no tenant's data outlives its policy (0: all keep forever)."""
        finite = [s for s in (self.defaults[kind], *self._overrides(kind)) if s]
        return min(finite) if finite else 0

    def tenant_overrides(self, kind: str) -> dict[str, int]:
        """Tenants with their own retention of ``kind``."""
        return {t: int(k[kind]) for t, k in self.tenants.items() if kind in k}

    def _overrides(self, kind: str) -> list[int]:
        return list(self.tenant_overrides(kind).values())


def later_of(connection: Connection, current: Any, new: Any) -> Any:
    """SQL: the later of two expiries where NULL means "not set" (PostgreSQL's greatest()
    ignores NULLs; SQLite's scalar max() returns NULL, hence the coalesce)."""
    if connection.dialect.name == "postgresql":
        return func.greatest(current, new)
    return func.coalesce(func.max(current, new), current, new)


NO_RETENTION: Final = RetentionPolicy(dict.fromkeys(KINDS, 0))
