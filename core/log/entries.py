"""WAL entries as the drainer meets them: read as raw bytes, then sorted one by one.

Every entry append.lua writes names its kind (``k``) and format version (``v``); an entry
without ``k`` was written before kinds existed and is a message, version 1. Sorting gives
each entry one of three fates:

- ``Known``: a kind and version this worker can decode; persisted.
- ``Unknown``: a kind or version from a newer worker (a rolling upgrade is under way): ``k`` is
  1-8 lowercase letters and ``v`` a number; left in the WAL, never acked, dead-lettered or
  dropped, for a worker that knows it.
- ``Malformed``: bytes that are not UTF-8, a missing field, a wrong type, bad JSON: no worker
  will ever decode it; dead-lettered raw, so an operator can look at it.

Later kinds add a decoder to ``DECODERS``: memories (``r``, ``u``, ``a``; ``core/memories/wal.py``),
state (``st``, ``ar``, ``ac``; ``core/state/wal.py``), checkpoints (``cp``, ``cw``, ``cd``;
``core/checkpoints/wal.py``).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.checkpoints import wal as checkpoint_wal
from core.checkpoints.wal import CheckpointWalRow
from core.errors import PermanentError
from core.log.repository import MessageRow
from core.memories import wal as memory_wal
from core.memories.wal import MemoryRow
from core.models import micros_to_datetime
from core.state import wal as state_wal
from core.state.wal import StateRow
from core.store.codec import expect_count, expect_text

MESSAGE = ("m", "1")
KIND_SHAPE = re.compile(r"[a-z]{1,8}")
VERSION_SHAPE = re.compile(r"[1-9][0-9]{0,3}")
RawFields = Mapping[bytes, bytes]
Row = MessageRow | MemoryRow | StateRow | CheckpointWalRow
Decoder = Callable[[dict[str, str]], Row]


def decode_message(fields: dict[str, str]) -> MessageRow:
    """A message entry (kind m, version 1): ``q`` = seq, ``d`` = the JSON record."""
    try:
        record = json.loads(fields["d"])
        row = MessageRow(
            message_id=expect_text(record["id"]),
            tenant=expect_text(record["t"]),
            session_id=expect_text(record["s"]),
            seq=expect_count(fields["q"]),
            role=expect_text(record["r"]),
            content=expect_text(record["c"]),
            tokens=expect_count(record["k"]),
            metadata=_object(record.get("md")),
            created_at=micros_to_datetime(expect_count(record["ts"])),
            subject_id=None if record.get("sub") is None else expect_text(record["sub"]),
        )
    except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise PermanentError(f"malformed WAL entry: {exc.__class__.__name__}: {exc}") from None
    return row


def _object(value: Any) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"metadata must be an object, got {type(value).__name__}")
    return value


DECODERS: dict[tuple[str, str], Decoder] = {
    MESSAGE: decode_message,
    **memory_wal.DECODERS,
    **state_wal.DECODERS,
    **checkpoint_wal.DECODERS,
}


@dataclass(frozen=True, slots=True)
class Known:
    kind: tuple[str, str]
    row: Row
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Unknown:
    kind: tuple[str, str]


@dataclass(frozen=True, slots=True)
class Malformed:
    error: str


Sorted = Known | Unknown | Malformed


def text_fields(raw: RawFields) -> dict[str, str] | None:
    """The fields as text, or None when a name or value is not UTF-8."""
    try:
        return {name.decode(): value.decode() for name, value in raw.items()}
    except UnicodeDecodeError:
        return None


def sort_entry(raw: RawFields, decoders: Mapping[tuple[str, str], Decoder] = DECODERS) -> Sorted:
    """What the drainer does with one entry (see the module docstring)."""
    fields = text_fields(raw)
    if fields is None:
        return Malformed("malformed WAL entry: a field name or value is not UTF-8")
    kind = (fields.get("k", MESSAGE[0]), fields.get("v", MESSAGE[1]))
    decoder = decoders.get(kind)
    if decoder is None:
        # Only the shape a newer append writes is waited for; anything else is junk that no
        # worker will ever read, and waiting for it would stall its shard for good.
        if KIND_SHAPE.fullmatch(kind[0]) and VERSION_SHAPE.fullmatch(kind[1]):
            return Unknown(kind)
        return Malformed(f"malformed WAL entry: kind {kind[0][:16]!r} version {kind[1][:16]!r}")
    try:
        return Known(kind, decoder(fields), fields)
    except PermanentError as exc:
        return Malformed(str(exc))


def printable(raw: RawFields) -> dict[str, Any]:
    """Raw fields for a listing: UTF-8 text as it is, other bytes as {"base64": ...} (a name
    that is not UTF-8 is shown as "base64:<its bytes in base64>")."""
    shown: dict[str, Any] = {}
    for name, value in raw.items():
        label = _show(name)
        shown[label if isinstance(label, str) else f"base64:{label['base64']}"] = _show(value)
    return shown


def _show(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(value).decode()}
