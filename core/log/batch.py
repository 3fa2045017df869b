"""One batch of WAL entries into the durable store: sorted entry by entry, then written with
bisection, so one poison entry costs a few extra transactions and blocks nothing."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import Engine

from config.settings import Settings
from core.checkpoints.wal import CheckpointRow, ThreadDeleteRow, WritesRow
from core.crypto.vault import sealing
from core.errors import PermanentError
from core.log.backpressure import Drained
from core.log.entries import Decoder, Known, Malformed, Row, Unknown, sort_entry
from core.log.report import DrainReport, Entry
from core.log.repository import MessageRow, persist_messages
from core.log.sealing import seal_items
from core.memories.wal import MemoryRow, RememberRow
from core.retention.policy import RetentionPolicy
from core.state.wal import ConsumedRow, ResultRow, StatePatchRow, StateRow

log = logging.getLogger(__name__)
# WAL entry field set by the append script when the session crossed its summary trigger.
SUMMARIZE_FLAG = "sum"


def persist_batch(
    engine: Engine,
    entries: list[Entry],
    *,
    decoders: Mapping[tuple[str, str], Decoder],
    deliveries: Mapping[str, int],
    settings: Settings,
) -> tuple[DrainReport, list[tuple[Entry, str]]]:
    """Write ``entries``; returns the report and the offenders with their errors.

    Stops at the first entry of a kind this worker does not know: it and every entry after
    it stay pending (``report.waiting``), so a newer worker persists them in order. A batch
    the store rejects for its content is bisected, so one poison entry costs a few extra
    transactions and never blocks the good entries around it.
    """
    report = DrainReport(batches=1)
    # Every row written gets its expires_at from the tenant's retention (core/retention).
    policy = RetentionPolicy.of(settings)
    offenders: list[tuple[Entry, str]] = []
    decoded: list[tuple[Entry, Known]] = []
    limit = settings.max_deliveries
    for index, entry in enumerate(entries):
        found = sort_entry(entry[1], decoders)
        if isinstance(found, Unknown):
            report.unprocessed = entries[index:]
            report.waiting_kind = "/".join(found.kind)
            break
        delivered = deliveries.get(entry[0], 1)
        if delivered > limit:
            offenders.append((entry, f"delivered {delivered} times (limit {limit})"))
        elif isinstance(found, Malformed):
            offenders.append((entry, found.error))
        else:
            decoded.append((entry, found))
            report.drained.append(_drained(found.row, len(entry[1].get(b"d", b""))))
    vault = sealing(engine)
    if vault is None or not decoded:
        offenders += _persist_isolating(engine, decoded, report, policy)
    else:
        # The hold spans the writes (and their commits): a destroy of any key sealed under
        # here waits for them (core/crypto/keystore.py: KeyHold).
        with vault.sealer() as sealer:
            offenders += _persist_isolating(
                engine, seal_items(engine, sealer, decoded), report, policy
            )
    report.dead_lettered = len(offenders)
    return report, offenders


def _drained(row: Row, size: int) -> Drained:
    """What settling this entry gives back (see ``core/log/backpressure.py``)."""
    if isinstance(row, MessageRow):
        return Drained(row.tenant, row.session_id, row.seq, size)
    if isinstance(row, RememberRow):
        return Drained(row.tenant, "", 0, size, row.memory_id)
    if isinstance(row, StatePatchRow):
        member = f"{row.tenant}/{row.session_id}"
        return Drained(row.tenant, "", 0, size, state_member=member, state_version=row.version)
    return Drained(row.tenant, "", 0, size)


def _persist_isolating(
    engine: Engine,
    items: list[tuple[Entry, Known]],
    report: DrainReport,
    policy: RetentionPolicy,
) -> list[tuple[Entry, str]]:
    if not items:
        return []
    rows: list[MessageRow] = []
    memory_rows: list[MemoryRow] = []
    state_rows: list[StateRow] = []
    checkpoint_rows: list[CheckpointRow | WritesRow | ThreadDeleteRow] = []
    for _, known in items:
        if isinstance(known.row, MessageRow):
            rows.append(known.row)
        elif isinstance(known.row, CheckpointRow | WritesRow | ThreadDeleteRow):
            checkpoint_rows.append(known.row)
        elif isinstance(known.row, StatePatchRow | ResultRow | ConsumedRow):
            state_rows.append(known.row)
        else:
            memory_rows.append(known.row)
    try:
        inserted = persist_messages(
            engine, rows, memory_rows, state_rows, checkpoint_rows, policy=policy
        )
    except PermanentError as exc:
        if len(items) == 1:
            log.warning("dead-lettering WAL entry %s: %s", items[0][0][0], exc)
            return [(items[0][0], str(exc))]
        middle = len(items) // 2
        # Left half first: good entries still land in seq order.
        return _persist_isolating(engine, items[:middle], report, policy) + _persist_isolating(
            engine, items[middle:], report, policy
        )
    report.persisted += inserted
    report.skipped += len(items) - inserted
    for _, known in items:
        if known.fields.get(SUMMARIZE_FLAG) == "1" and isinstance(known.row, MessageRow):
            report.summarize.add((known.row.tenant, known.row.session_id))
    return []
