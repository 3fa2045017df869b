"""Checkpoints as memscribe stores them, and the checks every write passes first.

The store is serde-agnostic: a value is a ``(type, base64)`` pair made by the adapter's
serializer (LangGraph's ``JsonPlusSerializer``: msgpack or JSON, nothing else). The JSON
shapes below are what Redis holds and what the WAL carries, so the drainer moves the base64
text into PostgreSQL without decoding it.

- record: ``{"ns", "id", "p" parent id or null, "t" type, "c" the checkpoint without its
  channel values, "m" metadata (JSON object), "bl" [[channel, version], ...], "sub" the data
  subject or null}``
- blobs: ``[[channel, version, type, base64 or null], ...]``
- writes: ``[[task_id, idx, channel, type, base64 or null, task_path], ...]``
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import ValidationError

MAX_ID_CHARS = 64
MAX_NAME_BYTES = 1024
MAX_TYPE_CHARS = 32
# The types a serializer may name (JsonPlusSerializer's data-only ones), optionally sealed by
# LangGraph's EncryptedSerializer ("msgpack+aes"). Anything else is refused: a stored value
# must never be one whose loading runs code (P8).
STORED_TYPES = frozenset({"msgpack", "json", "bytes", "bytearray", "null"})
_SEALED = re.compile(r"\+[a-z0-9]{1,16}")
# A channel that had a version but no value when the checkpoint was taken (LangGraph's
# convention, as PostgresSaver stores it): read back as absent.
EMPTY = "empty"
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    ns: str
    checkpoint_id: str
    parent_id: str | None
    type: str
    checkpoint: str  # base64
    metadata: dict[str, Any]
    blobs: tuple[tuple[str, str], ...]  # (channel, version) named by channel_versions
    subject_id: str | None = None

    def as_json(self) -> str:
        return _JSON.encode(
            {
                "ns": self.ns,
                "id": self.checkpoint_id,
                "p": self.parent_id,
                "t": self.type,
                "c": self.checkpoint,
                "m": self.metadata,
                "bl": [list(pair) for pair in self.blobs],
                "sub": self.subject_id,
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> CheckpointRecord:
        return cls.from_doc(json.loads(text))

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CheckpointRecord:
        return cls(
            ns=str(doc["ns"]),
            checkpoint_id=str(doc["id"]),
            parent_id=None if doc.get("p") is None else str(doc["p"]),
            type=str(doc["t"]),
            checkpoint=str(doc["c"]),
            metadata=dict(doc["m"]),
            blobs=tuple((str(channel), str(version)) for channel, version in doc["bl"]),
            subject_id=None if doc.get("sub") is None else str(doc["sub"]),
        )


@dataclass(frozen=True, slots=True)
class Blob:
    channel: str
    version: str
    type: str
    value: str | None  # base64


@dataclass(frozen=True, slots=True)
class PendingWrite:
    task_id: str
    idx: int
    channel: str
    type: str
    value: str | None  # base64
    task_path: str = ""

    def as_list(self) -> list[Any]:
        return [self.task_id, self.idx, self.channel, self.type, self.value, self.task_path]

    @classmethod
    def from_list(cls, item: Sequence[Any]) -> PendingWrite:
        task_id, idx, channel, kind, value, task_path = item
        return cls(str(task_id), int(idx), str(channel), str(kind), value, str(task_path or ""))


@dataclass(slots=True)
class Loaded:
    """One checkpoint as read: its record, its channels' values and its pending writes."""

    record: CheckpointRecord
    # channel -> (type, base64); channels stored as EMPTY are left out.
    values: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    writes: list[PendingWrite] = field(default_factory=list)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return b"" if text is None else base64.b64decode(text)


def encode_json(value: Any) -> str:
    return _JSON.encode(value)


# --- checks -------------------------------------------------------------------------------


def check_name(name: str, value: object, *, max_bytes: int = MAX_NAME_BYTES) -> str:
    """A namespace, channel, task id or path: a string without NUL within ``max_bytes``."""
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError(name, "must not contain NUL (U+0000) characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(name, "must be valid Unicode (it has a lone surrogate)") from None
    if size > max_bytes:
        raise ValidationError(name, f"must be at most {max_bytes} bytes, got {size}")
    return value


def check_checkpoint_id(name: str, value: object) -> str:
    checked = check_name(name, value, max_bytes=MAX_ID_CHARS)
    if not checked:
        raise ValidationError(name, f"must be 1..{MAX_ID_CHARS} characters, got ''")
    return checked


def check_type(name: str, value: object) -> str:
    checked = check_name(name, value, max_bytes=MAX_TYPE_CHARS)
    base, plus, cipher = checked.partition("+")
    if base not in STORED_TYPES or (plus and not _SEALED.fullmatch(plus + cipher)):
        allowed = ", ".join(sorted(STORED_TYPES))
        raise ValidationError(
            name, f"serializer type {checked!r} is refused: memscribe stores {allowed} only"
        )
    return checked


def check_metadata(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError("metadata", f"must be a JSON object, got {type(value).__name__}")
    try:
        _JSON.encode(value)  # the strict encoder: no NaN, str keys and JSON types only
    except (TypeError, ValueError) as exc:
        raise ValidationError("metadata", f"must be JSON-serializable: {exc}") from None
    return value


def check_size(name: str, size: int, limit: int) -> None:
    if size > limit:
        raise ValidationError(
            name,
            f"is {size} bytes serialized; the limit is {limit} (MEMSCRIBE_CHECKPOINT_MAX_BYTES)",
        )
