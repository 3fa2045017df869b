"""What the public API takes and returns, and the rules input must follow.

Every rule raises ``ValidationError`` naming the field and the limit before anything is sent to
Redis, so rejected input leaves no trace.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import ValidationError

ROLES = ("user", "assistant", "system", "tool")
ID_MAX_CHARS = 128
# No ':' (key separator), no '{' '}' (hash tags), no glob characters: ids are safe to put in
# Redis keys and SCAN patterns as they are.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")
ID_RULE = "1-128 characters of A-Z a-z 0-9 . _ @ + -, starting with a letter or digit"
METADATA_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Message:
    """One stored chat message."""

    message_id: str
    seq: int
    role: str
    content: str
    tokens: int
    created_at: datetime
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What ``append`` returns. ``duplicate`` is true when ``message_id`` was already stored."""

    message_id: str
    seq: int
    tokens: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """What a prompt needs: the rolling summary and the recent messages after it."""

    messages: list[Message] = field(default_factory=list)
    summary: str | None = None
    tokens: int = 0
    # True when Redis had nothing and the durable store answered (and Redis was re-warmed).
    from_durable_store: bool = False


def validate_id(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string ({ID_RULE}), got {type(value).__name__}")
    if not ID_PATTERN.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValidationError(name, f"must be {ID_RULE}; got {shown!r}")
    return value


def validate_role(value: object) -> str:
    if value not in ROLES:
        raise ValidationError("role", f"must be one of {', '.join(ROLES)}; got {value!r}")
    return str(value)


def validate_content(value: object, *, max_bytes: int) -> str:
    if not isinstance(value, str):
        raise ValidationError("content", f"must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ValidationError("content", "must not contain NUL (U+0000) characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(
            "content", "must be valid Unicode (it contains a lone surrogate)"
        ) from None
    if size > max_bytes:
        raise ValidationError("content", f"is {size} bytes; the limit is {max_bytes} bytes")
    return value


def _check_json_value(value: object, path: str, depth: int) -> None:
    if depth > METADATA_MAX_DEPTH:
        raise ValidationError(
            "metadata", f"nests deeper than {METADATA_MAX_DEPTH} levels at {path}"
        )
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("metadata", f"{path} is {value}; only finite numbers are JSON")
        return
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError("metadata", f"{path} contains NUL (U+0000)")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{path}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError("metadata", f"keys must be strings; {path} has {key!r}")
            if "\x00" in key:
                raise ValidationError("metadata", f"key at {path} contains NUL (U+0000)")
            _check_json_value(item, f"{path}.{key}", depth + 1)
        return
    raise ValidationError(
        "metadata", f"{path} is a {type(value).__name__}; only JSON types are allowed"
    )


def validate_metadata(value: object, *, max_bytes: int) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(
            "metadata", f"must be a JSON object (dict), got {type(value).__name__}"
        )
    _check_json_value(value, "metadata", 0)
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError("metadata", "must be valid Unicode (lone surrogate)") from None
    if size > max_bytes:
        raise ValidationError(
            "metadata", f"is {size} bytes as JSON; the limit is {max_bytes} bytes"
        )
    return value


def new_message_id() -> str:
    """A UUIDv7 (time-ordered, RFC 9562) as a string: 48-bit ms clock, then random bits."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 68) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def micros_to_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
