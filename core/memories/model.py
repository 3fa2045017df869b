"""What a long-term memory is, and the rules its input must follow.

A memory is a fact or preference about a data subject (usually a user) that outlives any
session. Every rule raises ``ValidationError`` naming the field and the limit before anything
is sent to Redis, so rejected input leaves no trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from core.errors import ValidationError
from core.models import Memory, Priority, validate_content, validate_id

__all__ = ["Memory", "Priority"]

TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,63}")
TAG_RULE = "1-64 characters of A-Z a-z 0-9 . _ : / @ + -, starting with a letter or digit"
TTL_MAX_S = 100 * 365 * 24 * 3600
SOURCE_FIELDS = ("session_id", "from_seq", "to_seq")


def validate_priority(value: object, name: str = "priority") -> Priority:
    if isinstance(value, Priority):
        return value
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority[value.upper()]
    shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
    raise ValidationError(name, f"must be one of {', '.join(Priority.__members__)}; got {shown!r}")


def validate_tags(value: object, *, max_tags: int, name: str = "tags") -> tuple[str, ...]:
    """Tags as a sorted tuple without repeats. Each is a plain label: no spaces, NUL, glob
    or hash-tag characters, so a tag is safe anywhere (a key, a log line, a filter)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValidationError(name, f"must be a list of strings, got {type(value).__name__}")
    tags = list(value)
    if len(tags) > max_tags:
        raise ValidationError(name, f"holds {len(tags)} tags; the limit is {max_tags}")
    for index, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise ValidationError(f"{name}[{index}]", f"must be a string, got {type(tag).__name__}")
        if not TAG_PATTERN.fullmatch(tag):
            shown = tag if len(tag) <= 40 else tag[:40] + "..."
            raise ValidationError(f"{name}[{index}]", f"must be {TAG_RULE}; got {shown!r}")
    return tuple(sorted(set(tags)))


def validate_ttl(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= TTL_MAX_S:
        raise ValidationError("ttl_s", f"must be an integer 1..{TTL_MAX_S} (seconds) or None")
    return value


def validate_source(value: object) -> dict[str, Any] | None:
    """Where a memory came from: ``{"session_id": ..., "from_seq": n, "to_seq": m}`` (any of
    them), or a session id alone."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"session_id": validate_id("source.session_id", value)}
    if not isinstance(value, Mapping):
        raise ValidationError("source", f"must be a mapping or None, got {type(value).__name__}")
    unknown = set(value) - set(SOURCE_FIELDS)
    if unknown:
        raise ValidationError(
            "source", f"unknown keys {sorted(map(str, unknown))}; allowed: {SOURCE_FIELDS}"
        )
    checked: dict[str, Any] = {}
    if value.get("session_id") is not None:
        checked["session_id"] = validate_id("source.session_id", value["session_id"])
    for name in ("from_seq", "to_seq"):
        seq = value.get(name)
        if seq is None:
            continue
        if isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq < 2**63:
            raise ValidationError(f"source.{name}", f"must be an integer >= 1, got {seq!r}")
        checked[name] = seq
    if checked.get("from_seq", 1) > checked.get("to_seq", 2**63):
        raise ValidationError("source.from_seq", "must not be above source.to_seq")
    return checked or None


def validate_memory_content(value: object, *, max_bytes: int, name: str = "content") -> str:
    try:
        content = validate_content(value, max_bytes=max_bytes)
    except ValidationError as exc:
        if name == "content":
            raise
        raise ValidationError(name, str(exc).split(": ", 1)[1]) from None
    if not content.strip():
        raise ValidationError(name, "must not be empty or only whitespace")
    return content
