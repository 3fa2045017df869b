"""Key-store exports: the data keys, still wrapped by the KEK, for a disaster that takes the
key store with the database.

Backups never hold data keys. With the key store in the content database (the default), losing
that database loses both, and backups alone restore nothing a subject owns. So every backup
run (``backup_export_keys``) also writes an export: every ``subject_keys`` row (the wrapped
keys and the records of destroyed ones) sealed under a fresh key that the KEK wraps. An export
is kept ``keystore_export_retention_s`` only: a key destroyed by an erasure still opens from
an export written before it until that export is pruned, so the erasure reaches backups
completely within that retention (docs/backups.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets as random
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select

from core.backups.frames import FrameError, FrameKey, FrameWriter, frame_records, open_frame
from core.backups.keys import new_wrapped_key, unwrap_key
from core.backups.manifest import ObjectEntry, new_backup_id
from core.backups.reading import checked_frames
from core.backups.target import Target
from core.crypto.keystore import DataKey, KeyStore, unwrap_row
from core.crypto.secrets import KeySecrets
from core.errors import ValidationError
from core.store.db import subject_keys
from core.store.db_errors import translate_errors

PREFIX = "keystore-exports"
_ROWS_PER_FRAME = 5_000


def _names(export_id: str) -> tuple[str, str]:
    return f"{PREFIX}/{export_id}.msk", f"{PREFIX}/{export_id}.json"


def _encode(row: Any) -> bytes:
    values = dict(row._mapping)
    if values["wrapped_key"] is not None:
        values["wrapped_key"] = base64.b64encode(values["wrapped_key"]).decode()
    for name in ("created_at", "destroyed_at"):
        if values[name] is not None:
            values[name] = values[name].isoformat()
    return json.dumps(values, separators=(",", ":")).encode()


def _decode(record: bytes) -> dict[str, Any]:
    values: dict[str, Any] = json.loads(record)
    if values["wrapped_key"] is not None:
        values["wrapped_key"] = base64.b64decode(values["wrapped_key"])
    for name in ("created_at", "destroyed_at"):
        if values[name] is not None:
            values[name] = datetime.fromisoformat(values[name])
    return values


def export_keys(target: Target, keystore: KeyStore) -> dict[str, Any]:
    """Write one export; returns its manifest (no key material in it but the wrapped key)."""
    now = datetime.now(UTC)
    export_id = new_backup_id(now, random.token_hex(3))
    data_name, manifest_name = _names(export_id)
    key, wrapped = new_wrapped_key(keystore.secrets, purpose=f"keystore-export/{export_id}")
    frame_key = FrameKey(f"export:{export_id}", key)
    rows = 0
    with (
        translate_errors(),
        keystore.engine.connect() as connection,
        target.create(data_name) as sink,
    ):
        frames = FrameWriter(sink, data_name)
        result = connection.execution_options(stream_results=True, yield_per=_ROWS_PER_FRAME)
        for batch in result.execute(select(subject_keys).order_by("key_id")).partitions():
            frames.add_rows(frame_key, [_encode(row) for row in batch])
            rows += len(batch)
        written = sink.close()
    body: dict[str, Any] = {
        "id": export_id,
        "created_at": now.isoformat(),
        "rows": rows,
        "key": wrapped,
        "object": {
            "name": written.name,
            "table": "subject_keys",
            "role": "rows",
            "size": written.size,
            "sha256": written.sha256,
            "frames": frames.frames,
            "entries": rows,
        },
    }
    body["manifest_sha256"] = _digest(body)
    target.put(manifest_name, json.dumps(body, indent=2, sort_keys=True).encode())
    return body


def _digest(body: dict[str, Any]) -> str:
    canonical = {k: v for k, v in body.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def list_exports(target: Target) -> list[dict[str, Any]]:
    """Exports with a valid manifest, newest first."""
    found = []
    for stored in target.list(f"{PREFIX}/"):
        if not stored.name.endswith(".json"):
            continue
        try:
            body = json.loads(target.read(stored.name))
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("manifest_sha256") == _digest(body):
            found.append(body)
    return sorted(found, key=lambda body: str(body["created_at"]), reverse=True)


def prune_exports(target: Target, *, retention_s: int, now: datetime | None = None) -> int:
    """Delete exports past their retention, and export objects no manifest completes that
    are over an hour old (an export being written has its data object before its manifest)."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(seconds=retention_s)
    valid = list_exports(target)
    kept = {
        name
        for body in valid
        if datetime.fromisoformat(body["created_at"]) >= cutoff
        for name in _names(body["id"])
    }
    named = {name for body in valid for name in _names(body["id"])}
    doomed = [
        stored.name
        for stored in target.list(f"{PREFIX}/")
        if stored.name not in kept
        and (stored.name in named or now - stored.modified > timedelta(hours=1))
    ]
    return target.delete(doomed)


class ExportedKeys:
    """A ``KeySource`` over one export (``restore --keys-from-export``)."""

    def __init__(self, target: Target, secrets: KeySecrets, export_id: str) -> None:
        chosen = [body for body in list_exports(target) if body["id"] == export_id]
        if not chosen:
            raise ValidationError("keys_from_export", f"no key-store export {export_id!r}")
        body = chosen[0]
        entry = ObjectEntry(**body["object"])
        key = unwrap_key(secrets, body["key"])
        self._secrets = secrets
        self._rows: dict[str, dict[str, Any]] = {}
        for frame in checked_frames(target, entry):
            for record in frame_records(open_frame(frame, key, entry.name)):
                values = _decode(record)
                self._rows[values["key_id"]] = values
        if len(self._rows) != body["rows"]:
            found = len(self._rows)
            raise FrameError(f"{entry.name}: {found} keys, the manifest says {body['rows']}")

    def lookup(self, key_ids: Iterable[str]) -> dict[str, DataKey | None]:
        found: dict[str, DataKey | None] = {}
        for key_id in set(key_ids):
            row = self._rows.get(key_id)
            if row is not None:
                live = row["wrapped_key"] is not None
                found[key_id] = unwrap_row(self._secrets, SimpleNamespace(**row)) if live else None
        return found

    def rows(self, key_ids: Iterable[str]) -> list[dict[str, Any]]:
        return [self._rows[key_id] for key_id in sorted(set(key_ids)) if key_id in self._rows]
