"""What the public API takes and returns, and the rules input must follow.

Every rule raises ``ValidationError`` naming the field and the limit before anything is sent to
Redis, so rejected input leaves no trace.
"""

from __future__ import annotations

import enum
import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from config.settings import Settings
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
    """What ``append`` returns. ``duplicate`` is true when ``message_id`` was already stored;
    ``summary_triggered`` when this append crossed the session's summary trigger."""

    message_id: str
    seq: int
    tokens: int
    duplicate: bool = False
    summary_triggered: bool = False


@dataclass(frozen=True, slots=True)
class Context:
    """What a prompt needs: the rolling summary and the recent messages after it.

    ``summary`` covers seq 1..``covers_through_seq``; ``messages`` are the buffered messages
    after it, oldest first. ``tokens`` is the whole context: the summary (counted as a system
    message) plus the messages. ``omitted_messages`` counts messages after the summary that are
    not in ``messages``: they left the buffer by its caps before a summary folded them, are in
    the durable store, and the next summary folds them.
    """

    messages: list[Message] = field(default_factory=list)
    summary: str | None = None
    tokens: int = 0
    # True when Redis had nothing and the durable store answered (and Redis was re-warmed).
    from_durable_store: bool = False
    summary_tokens: int = 0
    covers_through_seq: int = 0
    omitted_messages: int = 0
    # context(memories=k): the subject's most relevant long-term memories that fit the
    # memory budget (CRITICAL ones always), and their tokens (included in ``tokens``).
    memories: list[Memory] = field(default_factory=list)
    memory_tokens: int = 0


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a session's scroll-back (``history``): ``messages`` oldest first.

    Pass ``next_before_seq`` as ``before_seq`` for the page before this one; None when this
    page reached the session's first message. ``from_durable_store`` is true when any of the
    page was read from the durable store rather than the Redis buffer.
    """

    messages: list[Message] = field(default_factory=list)
    next_before_seq: int | None = None
    from_durable_store: bool = False


class Priority(enum.IntEnum):
    """How much a memory matters. Consolidation never merges, rewrites, supersedes or expires
    a CRITICAL memory; when a context budget is short, lower priorities go first."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4


@dataclass(frozen=True, slots=True)
class Memory:
    """One live memory, as ``recall`` returns it (``score``: its rank, higher first)."""

    memory_id: str
    content: str
    priority: str
    tags: tuple[str, ...]
    subject_id: str
    tenant: str
    pinned: bool = False
    created_at: datetime | None = None
    last_accessed: datetime | None = None
    access_count: int = 0
    ttl_s: int | None = None
    provenance: dict[str, Any] | None = None
    score: float = 0.0
    # Ids of the memories consolidation folded into this one (empty for an original).
    merged_from: tuple[str, ...] = field(default_factory=tuple)

    @property
    def level(self) -> Priority:
        return Priority[self.priority]


# SessionMemorySettings field -> its field in the session's config hash (read by append.lua).
MEMORY_SETTING_FIELDS = {
    "summary_trigger_tokens": "trigger",
    "buffer_max_messages": "max_messages",
    "buffer_max_tokens": "max_tokens",
    "keep_recent_tokens": "keep_recent",
}


@dataclass(frozen=True, slots=True)
class SessionMemorySettings:
    """A session's effective memory settings: global defaults, then its own overrides."""

    summary_trigger_tokens: int
    buffer_max_tokens: int
    buffer_max_messages: int
    keep_recent_tokens: int

    def with_overrides(self, stored: Mapping[str, str]) -> SessionMemorySettings:
        """These defaults overridden by a session's config hash."""
        values = {
            name: int(stored[field]) if field in stored else getattr(self, name)
            for name, field in MEMORY_SETTING_FIELDS.items()
        }
        return SessionMemorySettings(**values)


@dataclass(frozen=True, slots=True)
class MemoryStats:
    """What ``memory_stats`` reports about one session."""

    in_redis: bool
    last_seq: int
    buffered_messages: int
    buffered_tokens: int
    # Tokens of every message after the summary, buffered or not: what the trigger compares.
    unsummarized_tokens: int
    covers_through_seq: int
    summary_count: int
    summary_tokens: int
    last_summary_at: datetime | None
    summary_pending: bool
    # Appends that crossed the trigger, and request_summary() calls that asked, in Redis.
    crossings: int
    requests: int
    settings: SessionMemorySettings


def memory_defaults(settings: Settings) -> SessionMemorySettings:
    """The global defaults every session starts from."""
    return SessionMemorySettings(
        summary_trigger_tokens=settings.summary_trigger_tokens,
        buffer_max_tokens=settings.buffer_max_tokens,
        buffer_max_messages=settings.buffer_max_messages,
        keep_recent_tokens=settings.keep_recent_tokens,
    )


MEMORY_SETTING_MAX = 10_000_000


def validate_memory_settings(values: SessionMemorySettings) -> SessionMemorySettings:
    """The rules configure_session applies; the same ones Settings applies to the defaults."""
    for name in SessionMemorySettings.__slots__:
        value = getattr(values, name)
        low = 0 if name == "keep_recent_tokens" else 1
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
        if not low <= value <= MEMORY_SETTING_MAX:
            raise ValidationError(name, f"must be {low}..{MEMORY_SETTING_MAX}, got {value}")
    if values.buffer_max_messages > 10_000:
        raise ValidationError(
            "buffer_max_messages", f"must be 1..10000, got {values.buffer_max_messages}"
        )
    if values.keep_recent_tokens >= values.summary_trigger_tokens:
        # A crossing must leave something to fold, or it would cost an LLM call for nothing.
        raise ValidationError(
            "keep_recent_tokens",
            f"must be below summary_trigger_tokens ({values.summary_trigger_tokens}), "
            f"got {values.keep_recent_tokens}",
        )
    return values


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


def as_utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands back naive ones, stored as UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def micros_to_datetime(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)
