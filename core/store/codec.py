"""The JSON record a message travels as: built once by the client, stored as-is in the session
buffer (prefixed ``seq:tokens:``) and in the WAL entry (beside field ``q`` = seq).

The record carries everything the drainer needs, so the append script never parses JSON.
"""

from __future__ import annotations

import json
from typing import Any

from core.models import Message, micros_to_datetime


def encode_message(
    *,
    message_id: str,
    tenant: str,
    session_id: str,
    role: str,
    content: str,
    tokens: int,
    created_us: int,
    subject_id: str | None,
    metadata: dict[str, Any] | None,
) -> str:
    record: dict[str, Any] = {
        "id": message_id,
        "t": tenant,
        "s": session_id,
        "r": role,
        "c": content,
        "k": tokens,
        "ts": created_us,
    }
    if subject_id is not None:
        record["sub"] = subject_id
    if metadata is not None:
        record["md"] = metadata
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def buffer_item(seq: int, tokens: int, body: str) -> str:
    return f"{seq}:{tokens}:{body}"


def split_buffer_item(item: str) -> tuple[int, int, str]:
    """A buffer item's (seq, tokens, json record)."""
    seq, tokens, body = item.split(":", 2)
    return int(seq), int(tokens), body


def decode_buffer_item(item: str) -> Message:
    seq, _tokens, body = split_buffer_item(item)
    record = json.loads(body)
    return Message(
        message_id=record["id"],
        seq=seq,
        role=record["r"],
        content=record["c"],
        tokens=record["k"],
        created_at=micros_to_datetime(record["ts"]),
        metadata=record.get("md"),
    )


def expect_text(value: Any) -> str:
    """A WAL record's string field, or TypeError (the entry is malformed)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def expect_count(value: Any) -> int:
    """A WAL record's whole number 0 <= n < 2**63 (an int, or its text), or TypeError /
    ValueError (the entry is malformed)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    number = int(value)
    if not 0 <= number < 2**63:
        raise ValueError(f"{number} is out of range")
    return number
