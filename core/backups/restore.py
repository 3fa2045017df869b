"""Restoring a backup (and its chain) into an empty database, row for row.

1. Every object the chain's manifests name must be on the target with its size: a missing one
   fails the restore before anything is written.
2. The database is migrated to the backup's Alembic revision and must then be empty.
3. In one transaction, per table: the newest backup's row index is the exact set of rows to
   rebuild. Backups are read newest first; a row is inserted when its key and content hash are
   in that set and not yet restored, so an incremental's newer version wins, and a row deleted
   since the full backup (absent from the newest index) never comes back. Rows of a destroyed
   key (erased subjects) cannot be opened and are counted, and rows past their ``expires_at``
   are skipped and counted. Every object's checksum is held against its manifest as it is
   read; any error rolls the whole transaction back: nothing is half-restored.
4. The data keys of what was restored are copied, still wrapped by the KEK, from the key source
   into the restored database's ``subject_keys``, so it works on its own (same KEK).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, inspect, select

from core.backups.catalog import load_catalog
from core.backups.frames import Frame, FrameError, frame_records, open_frame
from core.backups.index import RowHasher, RowIndex
from core.backups.keys import BACKUP_KEY, KeySource, unwrap_key
from core.backups.manifest import ROWS, Manifest, ObjectEntry
from core.backups.reading import backup_key, checked_frames, read_index
from core.backups.tables import SPECS, TableSpec, encode_key, row_decoder
from core.backups.target import BackupTargetError, Target
from core.crypto.secrets import KeySecrets
from core.errors import ValidationError
from core.store.db import insert_for, make_engine, migrate, subject_keys
from core.store.db_errors import translate_errors

Progress = Callable[[str, int], None]
# Frames whose keys are looked up together (one key-store query per window).
_WINDOW_FRAMES = 256
_WINDOW_BYTES = 8 << 20


@dataclass
class RestoreReport:
    backup_id: str
    chain: list[str]
    restored: dict[str, int] = field(default_factory=dict)
    erased: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    keys_copied: int = 0
    duration_s: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.restored.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "chain": self.chain,
            "rows": self.rows,
            "restored": self.restored,
            "skipped_erased": self.erased,
            "skipped_expired": self.expired,
            "keys_copied": self.keys_copied,
            "duration_s": round(self.duration_s, 3),
        }

    def summary(self) -> str:
        return (
            f"restored {self.backup_id} ({len(self.chain)} backup(s)): {self.rows} rows, "
            f"skipped {sum(self.erased.values())} of erased subjects and "
            f"{sum(self.expired.values())} past retention, {self.keys_copied} data keys "
            f"copied, {self.duration_s:.1f}s"
        )


class Restorer:
    def __init__(
        self,
        *,
        target: Target,
        secrets: KeySecrets,
        keys: KeySource,
        batch_rows: int = 2_000,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> None:
        self.target = target
        self.secrets = secrets
        self.keys = keys
        self.batch_rows = batch_rows
        self.progress = progress
        self.now = now or datetime.now(UTC)

    def run(self, backup_id: str, *, into: str) -> RestoreReport:
        started = time.monotonic()
        chain = load_catalog(self.target).chain(backup_id)
        self._check_objects(chain)
        newest = chain[-1]
        engine = make_engine(into)
        report = RestoreReport(backup_id=backup_id, chain=[m.id for m in chain])
        try:
            with translate_errors(), engine.connect() as connection:
                self._check_empty(connection, None)  # before the migration changes anything
            migrate(into, newest.alembic_revision)
            with translate_errors(), engine.begin() as connection:
                self._check_empty(connection, newest.alembic_revision)
                used: set[str] = set()
                for spec in SPECS:
                    final = read_index(self.target, newest, spec.name, self.secrets)
                    _TableRestore(self, connection, spec, final, chain, report, used).run()
                copied = self.keys.rows(used)
                if copied:
                    connection.execute(insert_for(connection, subject_keys).values(copied))
                report.keys_copied = len(copied)
        finally:
            engine.dispose()
        report.duration_s = time.monotonic() - started
        return report

    def _check_objects(self, chain: list[Manifest]) -> None:
        stored = {}
        for manifest in chain:
            stored.update({item.name: item for item in self.target.list(f"backups/{manifest.id}/")})
        for manifest in chain:
            for entry in manifest.objects:
                found = stored.get(entry.name)
                if found is None:
                    raise BackupTargetError(
                        f"{entry.name}: named by the manifest of {manifest.id} but missing "
                        "from the target; nothing was restored"
                    )
                if found.size != entry.size:
                    raise BackupTargetError(
                        f"{entry.name}: {found.size} bytes, the manifest of {manifest.id} says "
                        f"{entry.size}; nothing was restored"
                    )

    def _check_empty(self, connection: Connection, revision: str | None) -> None:
        """Every table memscribe has there is empty; after the migration (``revision``), the
        database is at the backup's revision."""
        present = set(inspect(connection).get_table_names())
        if revision is not None:
            current = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            found = current.scalar()
            if found != revision:
                raise ValidationError(
                    "into",
                    f"the database is at revision {found}, the backup needs {revision}: "
                    "restore into an empty database (it is migrated to the backup's revision)",
                )
        for table in [spec.table for spec in SPECS] + [subject_keys]:
            if table.name not in present:
                continue
            rows = connection.execute(select(func.count()).select_from(table)).scalar_one()
            if rows:
                raise ValidationError(
                    "into", f"the database is not empty ({table.name} has {rows} rows)"
                )


class _TableRestore:
    def __init__(
        self,
        restorer: Restorer,
        connection: Connection,
        spec: TableSpec,
        final: RowIndex,
        chain: list[Manifest],
        report: RestoreReport,
        used: set[str],
    ) -> None:
        self.r = restorer
        self.connection = connection
        self.spec = spec
        self.final = final
        self.chain = chain
        self.report = report
        self.used = used
        self.done = bytearray(len(final))
        self.decode = row_decoder(spec)
        self.insert = spec.writable().insert()
        # PostgreSQL takes the rows by COPY: the JSON values are already its text input.
        self.copy = connection.dialect.name == "postgresql"
        self.batch: list[Any] = []
        self.unreadable = 0
        self.restored = self.expired = 0
        names = [column.name for column in spec.columns]
        self.expires_at = names.index("expires_at") if "expires_at" in names else None
        self.key_id_at = names.index("key_id") if "key_id" in names else None

    def run(self) -> None:
        hasher = RowHasher(unwrap_key(self.r.secrets, self.chain[-1].index_key))
        for manifest in reversed(self.chain):  # newest first: the newest version of a row wins
            own_id = f"{BACKUP_KEY}{manifest.id}"
            own = backup_key(self.r.secrets, manifest)
            for entry in manifest.objects_of(self.spec.name, ROWS):
                for window in _windows(self._frames(entry)):
                    keys = self.r.keys.lookup(
                        {frame.key_id for frame in window if frame.key_id != own_id}
                    )
                    for frame in window:
                        self._frame(frame, entry, own if frame.key_id == own_id else keys, hasher)
        self._flush()
        missing = len(self.done) - sum(self.done)
        if missing > self.unreadable:
            raise FrameError(
                f"{self.spec.name}: the chain of {self.chain[-1].id} lacks {missing} rows its "
                "index names; nothing was restored"
            )
        self.report.restored[self.spec.name] = self.restored
        self.report.erased[self.spec.name] = missing
        self.report.expired[self.spec.name] = self.expired

    def _frames(self, entry: ObjectEntry) -> Iterator[Frame]:
        return checked_frames(self.r.target, entry)

    def _frame(self, frame: Frame, entry: ObjectEntry, keys: Any, hasher: RowHasher) -> None:
        if isinstance(keys, bytes):
            key = keys
        else:
            if frame.key_id not in keys:
                raise FrameError(
                    f"{entry.name}: frame {frame.position} is sealed under a data key the key "
                    "store does not know (a key store older than the backup?)"
                )
            data_key = keys[frame.key_id]
            if data_key is None:  # destroyed: an erased subject (or tenant)
                self.unreadable += frame.rows
                self.used.add(frame.key_id)  # its destroyed record travels with the rows
                return
            key = data_key.key
            self.used.add(frame.key_id)
        positions = self.spec.pk_positions
        records = frame_records(open_frame(frame, key, entry.name))
        # One parse per frame: the rows' JSON arrays joined into one array of arrays.
        decoded = json.loads(b"[" + b",".join(records) + b"]")
        for record, values in zip(records, decoded, strict=True):
            at = self.final.find(hasher.key_hash(encode_key(values, positions)))
            if at < 0 or self.done[at] or self.final.rows[at] != hasher.row_hash(record):
                continue  # deleted or replaced by a newer backup of the chain
            self.done[at] = 1
            if self.expires_at is not None and _past(values[self.expires_at], self.r.now):
                self.expired += 1
                continue
            if self.key_id_at is not None and values[self.key_id_at]:
                self.used.add(values[self.key_id_at])
            self.batch.append(copy_line(values) if self.copy else self.decode(values))
            if len(self.batch) >= self.r.batch_rows:
                self._flush()

    def _flush(self) -> None:
        if self.batch and self.copy:
            columns = ", ".join(f'"{column.name}"' for column in self.spec.columns)
            cursor = self.connection.connection.cursor()
            try:
                cursor.copy_expert(
                    f"COPY {self.spec.name} ({columns}) FROM STDIN",
                    io.StringIO("".join(self.batch)),
                )
            finally:
                cursor.close()
        elif self.batch:
            self.connection.execute(self.insert, self.batch)
        if self.batch:
            self.restored += len(self.batch)
            self.batch = []
            if self.r.progress:
                self.r.progress(self.spec.name, self.restored)


# COPY's text format: backslash, tab, newline and carriage return escaped; \N is NULL.
_COPY_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_COPY_SPECIAL = re.compile(r"[\\\t\n\r]")


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, str):
        # Most values hold nothing to escape: one scan instead of a rewrite.
        if _COPY_SPECIAL.search(value) is None:
            return value
        return _COPY_SPECIAL.sub(lambda match: _COPY_ESCAPES[match.group()], value)
    return str(value)  # ints; timestamps and JSON already travel as text


def copy_line(values: list[Any]) -> str:
    """One row of COPY text format from a backed-up row's JSON values."""
    return "\t".join(map(_copy_value, values)) + "\n"


def _past(expires_at: str | None, now: datetime) -> bool:
    if not expires_at:
        return False
    when = datetime.fromisoformat(expires_at)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) <= now


def _windows(frames: Iterator[Frame]) -> Iterator[list[Frame]]:
    window: list[Frame] = []
    size = 0
    for frame in frames:
        window.append(frame)
        size += len(frame.sealed)
        if len(window) >= _WINDOW_FRAMES or size >= _WINDOW_BYTES:
            yield window
            window, size = [], 0
    if window:
        yield window
