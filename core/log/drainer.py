"""The drainer: moves each shard's write-ahead stream into the durable store in batches.

Per shard, under a short lease so one drainer works a shard at a time:
XAUTOCLAIM what dead consumers left pending -> XREADGROUP new entries -> bulk upsert -> commit
-> XACK -> trim with MINID no higher than the oldest pending id (``core/lua/ack_trim.lua``).

Exactly once: an entry is acked only after its transaction committed, so a crash replays it,
and the replay inserts nothing twice because rows are unique on ``message_id``.

Entries are read as raw bytes and sorted one by one (``core/log/entries.py``): a malformed entry is
dead-lettered raw and acked, an entry of a kind this worker does not know stops its shard for
a newer worker, and neither ever stops another entry or another shard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from sqlalchemy import Engine, text

from config.settings import Settings
from core.errors import TransientError
from core.log import deadletters, upgrades
from core.log.backoff import Backoff
from core.log.backpressure import Drained, MemoryGuard, settle_args
from core.log.batch import persist_batch
from core.log.entries import DECODERS, Decoder
from core.log.report import DrainReport, Entry
from core.log.status import ShardStatus, busy_shards, shard_status, wait_for_entries
from core.store.connections import as_text, raw_command
from core.store.db_errors import translate_errors
from core.store.keys import CONSUMER_GROUP, Keys
from core.store.lease import Lease
from core.store.redis_errors import translate
from core.store.scripts import Scripts

log = logging.getLogger(__name__)

# The longest idle wait between looks at every shard (a leased or waiting shard, the backoff).
IDLE_WAIT_S = 1.0


def default_consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Drainer:
    """Drains WAL shards into the durable store. One per process; not shared across forks."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        engine: Engine,
        settings: Settings,
        consumer: str | None = None,
        decoders: dict[tuple[str, str], Decoder] | None = None,
    ) -> None:
        self.redis = redis
        # The entry kinds and versions this worker can persist (a newer release adds some).
        self.decoders = DECODERS if decoders is None else decoders
        self.engine = engine
        self.settings = settings
        self.keys = Keys.of(settings)
        self.scripts = Scripts.register(redis)
        self.consumer = consumer or default_consumer_name()
        self.backoff = Backoff(
            redis,
            self.keys.backoff("store"),
            base_ms=settings.store_backoff_base_ms,
            cap_s=settings.store_backoff_cap_s,
        )
        self.memory = MemoryGuard(redis, self.keys, high_ratio=settings.redis_memory_high_ratio)
        self._groups_ready: set[str] = set()
        # The quiet WALs' positions from the last pass, for the idle wait.
        self._quiet: dict[str, str] = {}
        # Deliveries of entries taken over from other consumers, for the dead-letter rule.
        self._deliveries: dict[str, int] = {}

    # --- the steps, public so tests can stop a drainer between any two of them ---------------

    def ensure_group(self, shard: int) -> None:
        wal = self.keys.wal(shard)
        if wal in self._groups_ready:
            return
        try:
            # From id 0, not '$': entries appended before the group existed are drained too.
            self.redis.xgroup_create(wal, CONSUMER_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups_ready.add(wal)

    def reclaim(self, shard: int, *, count: int, lease: Lease | None = None) -> list[Entry]:
        """Take over entries other consumers left pending longer than the lease (XAUTOCLAIM,
        looped until its cursor is back at 0-0, ``count`` entries, or the lease is lost)."""
        wal = self.keys.wal(shard)
        claimed: list[Entry] = []
        cursor = "0-0"
        while len(claimed) < count:
            page = min(count - len(claimed), self.settings.batch_size)
            reply = raw_command(
                self.redis,
                "XAUTOCLAIM",
                wal,
                CONSUMER_GROUP,
                self.consumer,
                self.settings.drain_lease_ms,
                cursor,
                "COUNT",
                page,
            )
            cursor = as_text(reply[0])
            claimed += [(as_text(entry_id), fields) for entry_id, fields in reply[1] if fields]
            if cursor == "0-0" or (lease is not None and not lease.renew()):
                break
        if claimed:
            claimed = self._note_failures(shard, claimed)
        return claimed

    def _note_failures(self, shard: int, claimed: list[Entry]) -> list[Entry]:
        """Record the claimed entries' failures; return the part of ``claimed`` that may be
        processed now: the entries before the first older one still pending elsewhere.

        XAUTOCLAIM skips entries not idle long enough (a consumer that took them over shortly
        before, and may be alive), but claims idle ones after them: storing those first would
        commit later seqs before earlier ones. The rest stays pending to us and is reclaimed,
        in order, on a later pass.
        """
        # A pending entry found idle means an earlier attempt failed (crash or error): remember
        # when that was first seen, and how often the entry was delivered, for dead letters.
        wal = self.keys.wal(shard)
        now_ms = int(time.time() * 1000)
        details: list[dict[str, Any]] = self.redis.xpending_range(
            wal, CONSUMER_GROUP, min="-", max=claimed[-1][0], count=len(claimed) + 1
        )
        in_order = 0
        for detail, (entry_id, _fields) in zip(details, claimed, strict=False):
            if detail["message_id"] != entry_id:
                break
            in_order += 1
        with self.redis.pipeline(transaction=False) as pipe:
            for detail in details:
                if detail["consumer"] != self.consumer:
                    continue
                self._deliveries[detail["message_id"]] = int(detail["times_delivered"])
                pipe.hsetnx(self.keys.failing(shard), detail["message_id"], now_ms)
            pipe.execute()
        if in_order < len(claimed):
            log.info(
                "WAL shard %s: %s reclaimed entries wait behind an older pending one",
                shard,
                len(claimed) - in_order,
            )
        return claimed[:in_order]

    def read_new(self, shard: int, *, count: int) -> list[Entry]:
        reply = raw_command(
            self.redis,
            "XREADGROUP",
            "GROUP",
            CONSUMER_GROUP,
            self.consumer,
            "COUNT",
            count,
            "STREAMS",
            self.keys.wal(shard),
            ">",
        )
        if not reply:
            return []
        # [[stream, entries]]: we asked for one stream.
        return [(as_text(entry_id), fields) for entry_id, fields in reply[0][1]]

    def persist(self, entries: list[Entry]) -> tuple[DrainReport, list[tuple[Entry, str]]]:
        """Write ``entries``; returns the report and the offenders (see ``persist_batch``)."""
        return persist_batch(
            self.engine,
            entries,
            decoders=self.decoders,
            deliveries=self._deliveries,
            settings=self.settings,
        )

    def acknowledge(
        self,
        shard: int,
        entries: list[Entry],
        offenders: list[tuple[Entry, str]],
        drained: Sequence[Drained] = (),
    ) -> None:
        """Dead-letter the offenders, then ack the whole batch and trim the stream.

        In that order: a crash in between re-delivers the batch and records the dead letter
        again (replay is idempotent), rather than acking an entry recorded nowhere.
        """
        if not entries:
            return
        if offenders:
            self._dead_letter(shard, offenders)
        ids = [entry_id for entry_id, _ in entries]
        settle_keys, settle = settle_args(self.keys, shard, drained)
        self.scripts.ack_trim(
            keys=[self.keys.wal(shard), self.keys.failing(shard), *settle_keys],
            args=[CONSUMER_GROUP, len(ids), *ids, *settle],
        )
        for entry_id in ids:
            self._deliveries.pop(entry_id, None)

    def _dead_letter(self, shard: int, offenders: list[tuple[Entry, str]]) -> None:
        now_ms = int(time.time() * 1000)
        first_seen = self.redis.hmget(self.keys.failing(shard), [e[0] for e, _ in offenders])
        with self.redis.pipeline(transaction=False) as pipe:
            for ((entry_id, fields), error), first in zip(offenders, first_seen, strict=True):
                record = deadletters.wal_record(
                    fields,
                    entry_id=entry_id,
                    error=error,
                    deliveries=self._deliveries.get(entry_id, 1),
                    first_failed_ms=int(first) if first else now_ms,
                    now_ms=now_ms,
                )
                pipe.xadd(self.keys.dead_letters(shard), record)  # type: ignore[arg-type]
            pipe.execute()

    # --- the loop ----------------------------------------------------------------------------

    def process(self, shard: int, entries: list[Entry]) -> DrainReport:
        report, offenders = self.persist(entries)
        done = entries[: len(entries) - len(report.unprocessed)]
        # The ack settles the batch too, in one script: a kill in between cannot leak a
        # tenant's bytes or a memory id.
        self.acknowledge(shard, done, offenders, report.drained)
        report.drained = []
        if report.unprocessed:
            upgrades.leave_for_newer(self.redis, self.keys, shard, report.waiting_kind)
            report.waiting[shard] = report.waiting_kind
            report.unprocessed = []
        return report

    def drain_shard(self, shard: int, *, deadline: float) -> DrainReport:
        """Drain one shard until it is empty or ``deadline`` (monotonic) passes.

        Returns an empty report when another drainer holds the shard's lease, and when the
        shard waits for a newer worker.
        """
        report = DrainReport()
        lease = Lease(
            self.redis, self.scripts.lease, self.keys.lease(shard), self.settings.drain_lease_ms
        )
        if not lease.acquire():
            return report
        report.shards.append(shard)
        try:
            waiting = upgrades.waiting_for_newer(self.redis, self.keys, shard, self.decoders)
            if waiting:
                report.waiting[shard] = waiting
                return report
            self.ensure_group(shard)
            batch = self.settings.batch_size
            while time.monotonic() < deadline and (
                entries := self.reclaim(shard, count=batch, lease=lease)
            ):
                report.reclaimed += len(entries)
                report.add(self.process(shard, entries))
                if report.waiting or not lease.renew():
                    return report
            # Entries still pending belong to a consumer that may be alive (not idle long
            # enough to reclaim). Reading past them would commit later seqs before earlier ones.
            if self._pending_count(shard):
                return report
            while time.monotonic() < deadline and (entries := self.read_new(shard, count=batch)):
                report.add(self.process(shard, entries))
                if report.waiting:
                    break
                if not lease.renew():
                    log.warning("lost the lease of shard %s mid-drain; stopping", shard)
                    break
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise translate(exc) from None
            # Redis lost the stream (flushed, or restarted without AOF): make the group again
            # on the next pass instead of failing every flush until the process is recycled.
            self._groups_ready.discard(self.keys.wal(shard))
            log.warning("consumer group of shard %s is gone; it will be re-created", shard)
        except redis.RedisError as exc:
            raise translate(exc) from None
        finally:
            with contextlib.suppress(redis.RedisError):  # it expires on its own
                lease.release()
        return report

    def probe_store(self) -> None:
        """One cheap query, so an outage is found before any entry is taken (and counted)."""
        with translate_errors(), self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def drain_all(self, *, budget_s: float | None = None) -> DrainReport:
        """One pass over every shard with a backlog, in random order (spreads drainers).

        While the durable store fails, passes are skipped until the shared backoff allows the
        next probe; a failure is reported in ``report.error``, never raised.
        """
        deadline = time.monotonic() + (budget_s or self.settings.flush_budget_s)
        report = DrainReport()
        try:
            self.memory.check()
            wait_s = self.backoff.wait_s()
            busy, self._quiet = ([], {}) if wait_s else busy_shards(self.redis, self.keys)
        except redis.RedisError as exc:
            # Redis is the WAL: while it is away there is nothing to drain. Appends fail too.
            report.error = str(translate(exc))
            report.retry_in_s = 1.0
            return report
        if wait_s:
            report.retry_in_s = wait_s
            return report
        if not busy:
            return report
        random.shuffle(busy)
        try:
            self.probe_store()
            for shard in busy:
                if time.monotonic() >= deadline:
                    break
                report.add(self.drain_shard(shard, deadline=deadline))
        except TransientError as exc:
            report.error = str(exc)
            try:
                report.retry_in_s = self.backoff.failed(str(exc))
            except redis.RedisError:
                report.retry_in_s = 1.0  # Redis itself is away: nothing to drain meanwhile
            log.warning("durable store failing, next attempt in %.2fs: %s", report.retry_in_s, exc)
            return report
        self.backoff.succeeded()
        return report

    def run_for(
        self,
        seconds: float,
        *,
        poll_s: float = 0.05,
        on_report: Callable[[DrainReport], None] | None = None,
    ) -> DrainReport:
        """Drain repeatedly for ``seconds``, polling when idle: what one flush task does.

        While idle it blocks on the WALs (``XREAD BLOCK``) and drains as soon as an entry
        arrives, so lag stays low and an idle worker costs Redis a few commands a second.
        ``on_report`` sees each pass as it ends (to enqueue summaries without waiting for the
        whole run).
        """
        stop = time.monotonic() + seconds
        total = DrainReport()
        while (left := stop - time.monotonic()) > 0:
            report = self.drain_all(budget_s=left)
            if on_report is not None:
                on_report(report)
            total.add(report)
            if report.batches:
                continue
            if report.error or report.retry_in_s:
                time.sleep(min(left, max(poll_s, report.retry_in_s)))
            else:
                # Idle: block until a WAL gets an entry (one command) rather than poll every
                # shard; a shard someone else holds is looked at again within the second.
                try:
                    wait_for_entries(self.redis, self._quiet, timeout_s=min(left, IDLE_WAIT_S))
                except redis.RedisError:
                    time.sleep(min(left, poll_s))
        return total

    def flush(self, *, timeout_s: float, poll_s: float = 0.1) -> int:
        """Drain until every shard's backlog is zero; returns the backlog left at the timeout."""
        stop = time.monotonic() + timeout_s
        while True:
            backlog = sum(status.backlog for status in self.status())
            if backlog == 0 or time.monotonic() >= stop:
                return backlog
            report = self.drain_all(budget_s=max(0.1, min(5.0, stop - time.monotonic())))
            if not report.batches:
                # leased by another drainer, waiting to reclaim, or backing off
                time.sleep(min(max(poll_s, report.retry_in_s), max(0.0, stop - time.monotonic())))

    # --- observation -------------------------------------------------------------------------

    def _pending_count(self, shard: int) -> int:
        summary: dict[str, Any] = self.redis.xpending(self.keys.wal(shard), CONSUMER_GROUP)
        return int(summary["pending"])

    def status(self) -> list[ShardStatus]:
        """Per shard: stream length, pending and undelivered entries, oldest pending age."""
        return shard_status(self.redis, self.keys)
