"""Taking a backup: one snapshot of every durable table, streamed into encrypted objects.

Per table, rows are read in primary-key order in batches of ``backup_batch_rows``; each batch
becomes one frame per owner (a subject, a tenant, or the backup itself), sealed under that
owner's key and appended to the table's object, which a multipart upload carries to the target
as it grows. Memory holds one batch and the row index (16 bytes per row), whatever the size.

An incremental writes only the rows whose key is new or whose content changed since its
parent, and the keys of the parent's rows that are gone (purged, erased, cleared, superseded,
overwritten): restoring the chain never brings back what was deleted.

The manifest is written last. A run that dies before it leaves objects no manifest names:
they do not exist as a backup, and ``prune`` removes them.
"""

from __future__ import annotations

import logging
import secrets as random
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from core.backups import manifest as names
from core.backups.catalog import load_catalog
from core.backups.frames import FrameKey, FrameWriter
from core.backups.index import IndexBuilder, RowHasher, RowIndex
from core.backups.keys import BACKUP_KEY, SubjectFrameKeys, new_wrapped_key, unwrap_key
from core.backups.manifest import FULL, INCREMENTAL, Manifest, ObjectEntry, TableEntry
from core.backups.reading import memscribe_version, read_index
from core.backups.snapshot import RECENT, Snapshot, snapshot
from core.backups.tables import (
    RECORDS,
    SPECS,
    TableSpec,
    encode_key,
    encode_row,
    plain_values,
)
from core.backups.target import Target
from core.crypto.keystore import KeyStore
from core.errors import TransientError
from core.store.db import erasure_receipts

log = logging.getLogger(__name__)
# Rows of a tenant that belong to no subject are sealed under the tenant's own data key (this
# pseudo-subject, which no valid subject id can be): erase_tenant destroys it with the rest.
TENANT_SUBJECT = "*tenant"

Progress = Callable[[str, int], None]


class BackupAborted(TransientError):
    """The run stopped before its manifest; nothing it wrote counts. The next run retries."""


@dataclass
class _TableOutput:
    entry: TableEntry
    objects: list[ObjectEntry] = field(default_factory=list)


class BackupWriter:
    """One backup run (the caller holds the backup lease and passes ``renew``)."""

    def __init__(
        self,
        *,
        engine: Engine,
        target: Target,
        keystore: KeyStore,
        batch_rows: int,
        full_every: int,
        renew: Callable[[], bool] = lambda: True,
        progress: Progress | None = None,
    ) -> None:
        self.engine = engine
        self.target = target
        self.keystore = keystore
        self.secrets = keystore.secrets
        self.batch_rows = batch_rows
        self.full_every = full_every
        self.renew = renew
        self.progress = progress

    def run(self, *, kind: str = "auto") -> Manifest:
        """Take a backup: ``full``, ``incremental`` (on the newest backup) or ``auto`` (every
        ``full_every``-th one full)."""
        parent = load_catalog(self.target).latest()
        if kind == "auto":
            due_full = parent is None or len(parent.chain) >= self.full_every
            kind = FULL if due_full else INCREMENTAL
        if kind == INCREMENTAL and parent is None:
            kind = FULL  # nothing to be incremental on
        created = datetime.now(UTC)
        backup_id = names.new_backup_id(created, random.token_hex(3))
        backup_key, wrapped_backup = new_wrapped_key(self.secrets, purpose=f"rows/{backup_id}")
        if kind == FULL or parent is None:
            index_key, wrapped_index = new_wrapped_key(self.secrets, purpose=f"index/{backup_id}")
            chain = [backup_id]
        else:
            index_key, wrapped_index = unwrap_key(self.secrets, parent.index_key), parent.index_key
            chain = [*parent.chain, backup_id]
        started = time.monotonic()
        frame_keys = SubjectFrameKeys(self.keystore)
        own = FrameKey(f"{BACKUP_KEY}{backup_id}", backup_key)
        tables: dict[str, TableEntry] = {}
        objects: list[ObjectEntry] = []
        with snapshot(self.engine) as snap:
            for spec in SPECS:
                previous = (
                    read_index(self.target, parent, spec.name, self.secrets)
                    if kind == INCREMENTAL and parent is not None
                    else None
                )
                out = _TableRun(
                    self, snap, spec, backup_id, frame_keys, own, RowHasher(index_key), previous
                ).run()
                tables[spec.name] = out.entry
                objects.extend(out.objects)
            self._check_erasures(snap, frame_keys)
            result = Manifest(
                id=backup_id,
                kind=kind,
                parent=parent.id if kind == INCREMENTAL and parent else None,
                chain=chain,
                created_at=created.isoformat(),
                snapshot_at=snap.taken_at.astimezone(UTC).isoformat(),
                completed_at=datetime.now(UTC).isoformat(),
                alembic_revision=snap.alembic_revision,
                memscribe_version=memscribe_version(),
                dialect=snap.dialect,
                backup_key=wrapped_backup,
                index_key=wrapped_index,
                tables=tables,
                objects=objects,
            )
        # The completion mark: until this object exists, the backup does not.
        self.target.put(names.manifest_name(backup_id), result.to_bytes())
        log.info(
            "backup %s (%s) complete: %s rows written of %s, %.1fs",
            backup_id,
            kind,
            result.rows,
            result.total_rows,
            time.monotonic() - started,
        )
        return result

    def _check_erasures(self, snap: Snapshot, frame_keys: SubjectFrameKeys) -> None:
        """An erasure that began during the backup may have destroyed a subject's key after
        this run read its rows and before it asked for the key, so they would be sealed under a
        new key: refuse the backup rather than keep a readable copy of an erased subject.
        (Erasures the snapshot saw pending were left out; finished ones left nothing behind.)"""
        with self.engine.connect() as connection:
            recent = connection.execute(
                select(
                    erasure_receipts.c.receipt_id,
                    erasure_receipts.c.tenant,
                    erasure_receipts.c.subject_ref,
                ).where(erasure_receipts.c.requested_at >= snap.taken_at - RECENT)
            ).all()
        tenants = {tenant for tenant, _ in frame_keys.refs}
        for row in recent:
            if row.receipt_id in snap.seen_receipts:
                continue
            hit = (
                (row.tenant, row.subject_ref) in frame_keys.refs
                if row.subject_ref
                else row.tenant in tenants
            )
            if hit:
                raise BackupAborted(
                    "an erasure of data in this backup began while it was taken; no manifest "
                    "was written, and the next run takes a fresh snapshot"
                )


class _TableRun:
    """One table of one backup."""

    def __init__(
        self,
        writer: BackupWriter,
        snap: Snapshot,
        spec: TableSpec,
        backup_id: str,
        frame_keys: SubjectFrameKeys,
        own: FrameKey,
        hasher: RowHasher,
        previous: RowIndex | None,
    ) -> None:
        self.writer = writer
        self.snap = snap
        self.spec = spec
        self.backup_id = backup_id
        self.frame_keys = frame_keys
        self.own = own
        self.hasher = hasher
        self.previous = previous
        self.seen = bytearray(len(previous)) if previous is not None else None
        self.index = IndexBuilder()
        self.erasing = 0
        self.tenant_at = [column.name for column in spec.columns].index("tenant")
        self.columns = len(spec.columns)
        self.plain = plain_values(spec)

    def run(self) -> _TableOutput:
        target = self.writer.target
        name = names.object_name(self.backup_id, self.spec.name, names.ROWS)
        sink = target.create(name)
        try:
            frames = FrameWriter(sink, name)
            result = self.snap.stream(self.spec.select_rows(), batch_rows=self.writer.batch_rows)
            done = 0
            for batch in result.partitions():
                self._write_batch(frames, batch)
                done += len(batch)
                if self.writer.progress:
                    self.writer.progress(self.spec.name, done)
                if not self.writer.renew():
                    raise BackupAborted("the backup lease was lost (another run took over)")
            written = sink.close()
        except BaseException:
            sink.abort()
            raise
        objects = [_entry(written, self.spec.name, names.ROWS, frames.frames, frames.rows)]
        index = self.index.finish()
        if index.has_collision():
            raise BackupAborted(f"{self.spec.name}: two keys share an index hash; take a full one")
        objects.append(self._write_index(index))
        deleted = 0
        if self.seen is not None and self.previous is not None:
            gone = array(
                "Q", (key for key, s in zip(self.previous.keys, self.seen, strict=True) if not s)
            )
            deleted = len(gone)
            objects.append(self._write_deletions(gone))
        entry = TableEntry(
            rows=frames.rows, total=len(index), deleted=deleted, erasing=self.erasing
        )
        return _TableOutput(entry, objects)

    def _write_batch(self, frames: FrameWriter, batch: list[Any]) -> None:
        groups: dict[tuple[str, str] | None, list[bytes]] = {}
        owner_of_spec = self.spec.owner is not None
        positions = self.spec.pk_positions
        erasing_subjects = self.snap.erasing_subjects
        erasing_tenants = self.snap.erasing_tenants
        is_record = self.spec.name in RECORDS
        for row in batch:
            values = row[: self.columns]
            tenant = values[self.tenant_at]
            subject = row[-1] if owner_of_spec else None
            if not is_record and (
                tenant in erasing_tenants
                or (subject and (tenant, self.frame_keys.ref(tenant, subject)) in erasing_subjects)
            ):
                self.erasing += 1
                continue
            plain = self.plain(values)
            encoded = encode_row(plain)
            key_hash = self.hasher.key_hash(encode_key(plain, positions))
            row_hash = self.hasher.row_hash(encoded)
            self.index.add(key_hash, row_hash)
            if self.previous is not None and self.seen is not None:
                at = self.previous.find(key_hash)
                if at >= 0:
                    self.seen[at] = 1
                    if self.previous.rows[at] == row_hash:
                        continue  # unchanged since the parent
            owner = None if is_record else (tenant, subject or TENANT_SUBJECT)
            groups.setdefault(owner, []).append(encoded)
        keys = self.frame_keys.keys(owner for owner in groups if owner is not None)
        for owner, records in groups.items():
            frames.add_rows(self.own if owner is None else keys[owner], records)

    def _write_index(self, index: RowIndex) -> ObjectEntry:
        name = names.object_name(self.backup_id, self.spec.name, names.INDEX)
        with self.writer.target.create(name) as sink:
            frames = FrameWriter(sink, name)
            for payload, entries in index.payloads():
                frames.add(self.own, payload, rows=entries)
            written = sink.close()
        return _entry(written, self.spec.name, names.INDEX, frames.frames, frames.rows)

    def _write_deletions(self, gone: array[int]) -> ObjectEntry:
        name = names.object_name(self.backup_id, self.spec.name, names.DELETIONS)
        with self.writer.target.create(name) as sink:
            frames = FrameWriter(sink, name)
            for start in range(0, len(gone), 65_536):
                part = gone[start : start + 65_536]
                frames.add(self.own, part.tobytes(), rows=len(part))
            written = sink.close()
        return _entry(written, self.spec.name, names.DELETIONS, frames.frames, frames.rows)


def _entry(written: Any, table: str, role: str, frames: int, entries: int) -> ObjectEntry:
    return ObjectEntry(
        name=written.name,
        table=table,
        role=role,
        size=written.size,
        sha256=written.sha256,
        frames=frames,
        entries=entries,
    )
