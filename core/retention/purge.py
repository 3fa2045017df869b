"""The purge: delete what retention says is due, in bounded batches, under a lease.

One run (``maintenance.purge_expired`` on beat, or ``memscribe purge``) deletes, in this order:
messages, summaries, memories, state history, agent results, then session rows with nothing
left, LangGraph checkpoints past their retention (of state) and those of deleted threads, then
llm_usage rows; each in batches of ``purge_batch_rows`` rows, one short
transaction per batch, until nothing is due or ``purge_max_rows_per_run`` rows are gone (the
next run goes on). Then Redis: the buffered copies of purged messages (``purge_buffer.lua``,
one session per call), the purged memories in their subject's view, and the dead-letter
streams trimmed by age (``XTRIM MINID``).

The report holds counts only: no content and no ids of subjects reach the logs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import Engine

from core.retention import sql
from core.retention.policy import RetentionPolicy
from core.store.db_errors import translate_errors
from core.store.keys import Keys
from core.store.lease import Lease
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

# Renewed after every batch; a run that dies leaves the lease to expire within this.
LEASE_MS = 120_000
# A recall counts its access in Redis at once and in the store through the WAL, seconds later:
# a memory recalled just before its decay is not purged before that access lands.
MEMORY_GRACE = timedelta(minutes=10)
# Redis calls per pipeline when trimming buffers and subject views.
_PIPELINE = 500
KINDS = (
    "messages",
    "summaries",
    "memories",
    "state_history",
    "agent_results",
    "sessions",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "usage",
)


@dataclass
class PurgeReport:
    """What one run removed, per kind (counts only)."""

    ran: bool = True
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    # Redis: buffered message copies, memories dropped from views, dead-letter entries.
    redis: dict[str, int] = field(
        default_factory=lambda: {"buffer_items": 0, "view_memories": 0, "dead_letters": 0}
    )
    batches: int = 0
    # The per-run limit stopped this run with rows still due: the next run goes on.
    more: bool = False
    lease_lost: bool = False
    duration_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "rows": self.rows,
            "counts": dict(self.counts),
            "redis": dict(self.redis),
            "batches": self.batches,
            "more": self.more,
            "lease_lost": self.lease_lost,
            "duration_s": round(self.duration_s, 3),
        }

    def summary(self) -> str:
        if not self.ran:
            return "purge skipped: another run holds the purge lease"
        kinds = ", ".join(f"{kind} {count}" for kind, count in self.counts.items() if count)
        return (
            f"purged {self.rows} rows ({kinds or 'nothing due'}) in {self.batches} batches, "
            f"{self.duration_s:.2f}s; Redis: {self.redis['buffer_items']} buffered messages, "
            f"{self.redis['view_memories']} memories, {self.redis['dead_letters']} dead letters"
            + ("; more due, the next run goes on" if self.more else "")
        )


class Purge:
    """One deployment's purge. ``now`` is injectable so tests purge "as of" a time."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        engine: Engine,
        settings: Settings,
        scripts: Scripts | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.settings = settings
        self.keys = Keys.of(settings)
        self.scripts = scripts or Scripts.register(redis)
        self.policy = RetentionPolicy.of(settings)
        self.clock = clock

    def run(self) -> PurgeReport:
        """One purge run; skips (``ran=False``) when another run holds the lease."""
        lease = Lease(self.redis, self.scripts.lease, self.keys.purge_lease(), LEASE_MS)
        with redis_errors():
            if not lease.acquire():
                log.info("purge skipped: another run holds the purge lease")
                return PurgeReport(ran=False)
        started = time.monotonic()
        report = PurgeReport()
        try:
            self._store(report, lease)
            self._dead_letters(report)
        finally:
            with redis_errors():
                lease.release()
            report.duration_s = time.monotonic() - started
        log.info("%s", report.summary())
        return report

    # --- the durable store ---------------------------------------------------------------

    def _store(self, report: PurgeReport, lease: Lease) -> None:
        now = self.clock()
        dialect = self.engine.dialect.name
        left = self.settings.purge_max_rows_per_run
        for kind in KINDS[:-1]:
            cutoff = now - MEMORY_GRACE if kind == "memories" else now
            statement = sql.expiring_batch(dialect, kind)
            left = self._batches(report, lease, kind, left, statement, {"now": cutoff})
            if left <= 0 or report.lease_lost:
                return
        for table in sql.CHECKPOINT_TABLES:
            # Rows of threads deleted by delete_thread (their floor hides them already).
            statement = sql.deleted_thread_batch(dialect, table)
            left = self._batches(report, lease, table, left, statement, {})
            if left <= 0 or report.lease_lost:
                return
        for params, tenant in self._usage_rules(now):
            statement = sql.usage_batch(dialect, tenant=tenant)
            left = self._batches(report, lease, "usage", left, statement, params)
            if left <= 0 or report.lease_lost:
                return

    def _batches(
        self,
        report: PurgeReport,
        lease: Lease,
        kind: str,
        left: int,
        statement: Any,
        params: dict[str, Any],
    ) -> int:
        size = self.settings.purge_batch_rows
        while left > 0:
            n = min(size, left)
            with translate_errors(), self.engine.begin() as connection:
                rows = list(connection.execute(statement, {**params, "n": n}).all())
                if kind == "memories" and rows:
                    ids = [row.memory_id for row in rows]
                    connection.execute(sql.lineage_of(connection.dialect.name), {"ids": ids})
            report.batches += 1
            report.counts[kind] += len(rows)
            left -= len(rows)
            if kind == "messages":
                self._trim_buffers(report, rows)
            elif kind == "memories":
                self._trim_views(report, rows)
            if len(rows) < n:
                return left
            with redis_errors():
                if not lease.renew():
                    # Another run took over after our lease expired: stop, it goes on.
                    log.warning("purge lease lost after %s batches; stopping", report.batches)
                    report.lease_lost = True
                    return left
        report.more = True
        return left

    def _usage_rules(self, now: datetime) -> Iterable[tuple[dict[str, Any], str | None]]:
        """(params, tenant) per rule: each tenant with its own usage retention, then the
        default for every other tenant."""
        today = now.astimezone(UTC).date()
        own = self.policy.tenant_overrides("usage")
        for tenant, seconds in sorted(own.items()):
            if seconds:
                yield {"day": today - timedelta(seconds=seconds), "tenant": tenant}, tenant
        default = self.policy.defaults["usage"]
        if default:
            yield {"day": today - timedelta(seconds=default), "skip": sorted(own)}, None

    # --- Redis -------------------------------------------------------------------------------

    def _trim_buffers(self, report: PurgeReport, rows: list[Any]) -> None:
        """Drop the Redis copies of purged messages: per session, items through the highest
        purged seq (a session's messages expire in seq order under one policy)."""
        through: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row.tenant, row.session_id)
            through[key] = max(through.get(key, 0), int(row.seq))
        items = sorted(through.items())
        for start in range(0, len(items), _PIPELINE):
            with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
                for (tenant, session_id), seq in items[start : start + _PIPELINE]:
                    keys = self.keys.session(tenant, session_id)
                    self.scripts.purge_buffer(
                        keys=[keys.buffer, keys.meta], args=[seq], client=pipe
                    )
                report.redis["buffer_items"] += sum(int(n) for n in pipe.execute())

    def _trim_views(self, report: PurgeReport, rows: list[Any]) -> None:
        """Drop purged memories from their subject's Redis view (what recall reads)."""
        rows = sorted(rows, key=lambda row: (row.tenant, row.subject_id))
        for start in range(0, len(rows), _PIPELINE):
            with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
                for row in rows[start : start + _PIPELINE]:
                    keys = self.keys.subject(row.tenant, row.subject_id)
                    pipe.hdel(keys.memories, row.memory_id)
                    pipe.hdel(keys.accessed, row.memory_id)
                    pipe.hdel(keys.embeddings, row.memory_id)
                replies = pipe.execute()
            report.redis["view_memories"] += sum(int(n) for n in replies[::3])

    def _dead_letters(self, report: PurgeReport) -> None:
        """Trim the WAL and task dead-letter streams by age. Their entry ids are the times
        they were dead-lettered, so ``XTRIM MINID`` removes exactly the older ones. Shared by
        tenants: the shortest tenant retention applies (``RetentionPolicy.shared_seconds``)."""
        seconds = self.policy.shared_seconds("dead_letters")
        if not seconds:
            return
        min_id = f"{int(self.clock().timestamp() * 1000) - seconds * 1000}-0"
        streams = [self.keys.dead_letters(s) for s in range(self.settings.shards)]
        streams.append(self.keys.task_dead_letters())
        with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xtrim(stream, minid=min_id, approximate=False)
            report.redis["dead_letters"] += sum(int(n) for n in pipe.execute())


def purge_expired(
    *, redis: redis.Redis, engine: Engine, settings: Settings, scripts: Scripts | None = None
) -> PurgeReport:
    """One purge run with these clients (see ``Purge``)."""
    return Purge(redis=redis, engine=engine, settings=settings, scripts=scripts).run()
