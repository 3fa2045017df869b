"""A backup's manifest: written last, it is what makes the backup exist.

It names every object (size, SHA-256, role), the row counts per table, the Alembic revision
and memscribe version, the snapshot time and the parent backup, and carries the backup's own
keys wrapped by the KEK. ``manifest_sha256`` covers the canonical JSON of everything else, so
a manifest edited or cut short is refused like a missing one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.backups.frames import FrameError

FORMAT = 1
FULL, INCREMENTAL = "full", "incremental"
MANIFEST = "manifest.json"
PREFIX = "backups"
ID_PATTERN = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{6}$")
# Object roles: rows of a table, its index, the keys it deleted since the parent.
ROWS, INDEX, DELETIONS = "rows", "index", "deletions"


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    name: str
    table: str
    role: str
    size: int
    sha256: str
    frames: int
    entries: int


@dataclass(frozen=True, slots=True)
class TableEntry:
    # Rows in this backup's objects (all of them for a full, the changed ones otherwise).
    rows: int
    # Rows in the snapshot (what a restore of this backup rebuilds, before skips).
    total: int
    # Keys of the parent's snapshot gone from this one.
    deleted: int
    # Rows left out because their subject's or tenant's erasure was under way.
    erasing: int


@dataclass(frozen=True)
class Manifest:
    id: str
    kind: str
    parent: str | None
    chain: list[str]  # ids from the chain's full backup to this one (this one last)
    created_at: str
    snapshot_at: str
    completed_at: str
    alembic_revision: str
    memscribe_version: str
    dialect: str
    # {"kek_id": ..., "wrapped": base64}: the key of rows without a subject, and the index key.
    backup_key: dict[str, str]
    index_key: dict[str, str]
    tables: dict[str, TableEntry]
    objects: list[ObjectEntry]
    format: int = FORMAT
    manifest_sha256: str = field(default="")

    @property
    def rows(self) -> int:
        return sum(entry.rows for entry in self.tables.values())

    @property
    def total_rows(self) -> int:
        return sum(entry.total for entry in self.tables.values())

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)

    def object_names(self) -> set[str]:
        return {entry.name for entry in self.objects} | {manifest_name(self.id)}

    def objects_of(self, table: str, role: str) -> list[ObjectEntry]:
        return [entry for entry in self.objects if entry.table == table and entry.role == role]

    def to_bytes(self) -> bytes:
        body = self._body()
        body["manifest_sha256"] = _digest(body)
        return json.dumps(body, indent=2, sort_keys=True).encode()

    def _body(self) -> dict[str, Any]:
        body = asdict(self)
        body.pop("manifest_sha256")
        return body

    def summary(self) -> dict[str, Any]:
        """What ``backup list --json`` prints for it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "parent": self.parent,
            "created_at": self.created_at,
            "snapshot_at": self.snapshot_at,
            "rows": self.rows,
            "total_rows": self.total_rows,
            "bytes": sum(entry.size for entry in self.objects),
            "alembic_revision": self.alembic_revision,
        }


def _digest(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def parse_manifest(raw: bytes, name: str) -> Manifest:
    """The manifest in ``raw``; ``FrameError`` naming it if it is malformed or was changed."""
    try:
        body = json.loads(raw)
        claimed = body.pop("manifest_sha256")
        if _digest(body) != claimed:
            raise FrameError(f"{name}: manifest checksum does not match its content")
        if body.get("format") != FORMAT:
            raise FrameError(f"{name}: manifest format {body.get('format')!r} is not {FORMAT}")
        tables = {table: TableEntry(**entry) for table, entry in body.pop("tables").items()}
        objects = [ObjectEntry(**entry) for entry in body.pop("objects")]
        return Manifest(**body, tables=tables, objects=objects, manifest_sha256=claimed)
    except FrameError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FrameError(f"{name}: malformed manifest ({exc.__class__.__name__})") from None


def new_backup_id(now: datetime, suffix: str) -> str:
    """Sortable by time to the millisecond: ``20261203T101500123Z-ab12cd``."""
    now = now.astimezone(UTC)
    return f"{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{suffix}"


def object_name(backup_id: str, table: str, role: str) -> str:
    return f"{PREFIX}/{backup_id}/{table}.{role}.msb"


def manifest_name(backup_id: str) -> str:
    return f"{PREFIX}/{backup_id}/{MANIFEST}"


def backup_id_of(name: str) -> str | None:
    """The backup id an object name belongs to (None for names outside backups/)."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[0] == PREFIX and ID_PATTERN.match(parts[1]):
        return parts[1]
    return None
