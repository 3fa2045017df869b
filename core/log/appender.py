"""The request path: messages validated and encoded in process, then one ``EVALSHA`` of
``core/lua/append.lua`` for any number of messages of one session.

A warm session costs that one call. A session Redis does not hold (forgotten, or brand-new)
costs one more: the first call returns "cold" without writing, the session is read from the
durable store, and the same script runs again with it (``core/sessions/restore.py``).

A call's arguments and its reply are built and read by pure methods and functions
(``append_args``, ``cold_args``, ``rewarm_args``, ``script_keys``; ``is_cold``, ``results``)
that ``AsyncAppender`` shares: the sync and the async clients differ only in their I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from core.errors import ValidationError
from core.models import (
    AppendResult,
    new_message_id,
    validate_content,
    validate_id,
    validate_metadata,
    validate_role,
)
from core.retention.policy import RetentionPolicy
from core.sessions import restore as session_restore
from core.sessions.restore import DurableContext
from core.store.codec import encode_message
from core.store.keys import Keys, SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts
from core.store.tokens import TokenCounter

# One call's arguments stay well below Redis's limits, and one call never holds Redis long.
APPEND_MANY_MAX = 1000
_MESSAGE_FIELDS = {"role", "content", "message_id", "metadata"}


@dataclass(frozen=True, slots=True)
class Prepared:
    """One validated message, encoded as the buffer and the WAL carry it."""

    message_id: str
    body: str
    tokens: int
    created_us: int


class Appender:
    """Builds and sends append.lua calls for one deployment's settings."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        scripts: Scripts,
        settings: Settings,
        tokens: TokenCounter,
        engine: Callable[[], Engine],
    ) -> None:
        self._redis = redis
        # Called only on the cold path: a warm append never touches the durable store.
        self._engine = engine
        self._scripts = scripts
        self._settings = settings
        self._keys = Keys.of(settings)
        self._tokens = tokens
        self._retention = RetentionPolicy.of(settings)
        self._pending_ms = int(settings.summary_pending_timeout_s * 1000)
        self._tenant_budget = settings.tenant_budget_per_shard

    def prepare(
        self,
        keys: SessionKeys,
        *,
        role: object,
        content: object,
        message_id: object,
        metadata: object,
        subject_id: str | None,
        created_us: int,
        field: str = "",
    ) -> Prepared:
        """Validate and encode one message; ``field`` prefixes the names in errors."""
        settings = self._settings
        try:
            checked_id = validate_id("message_id", message_id or new_message_id())
            checked_role = validate_role(role)
            checked_content = validate_content(content, max_bytes=settings.max_content_bytes)
            checked_metadata = validate_metadata(metadata, max_bytes=settings.max_metadata_bytes)
        except ValidationError as exc:
            if not field:
                raise
            raise ValidationError(f"{field}.{exc.field}", str(exc).split(": ", 1)[1]) from None
        tokens = self._tokens.count_message(checked_role, checked_content)
        body = encode_message(
            message_id=checked_id,
            tenant=keys.tenant,
            session_id=keys.session_id,
            role=checked_role,
            content=checked_content,
            tokens=tokens,
            created_us=created_us,
            subject_id=subject_id,
            metadata=checked_metadata,
        )
        return Prepared(checked_id, body, tokens, created_us)

    def prepare_many(
        self, keys: SessionKeys, messages: object, *, subject_id: str | None, created_us: int
    ) -> list[Prepared]:
        if not isinstance(messages, Sequence) or isinstance(messages, str | bytes):
            raise ValidationError("messages", "must be a list of mappings")
        if not 1 <= len(messages) <= APPEND_MANY_MAX:
            raise ValidationError(
                "messages", f"must hold 1..{APPEND_MANY_MAX} messages, got {len(messages)}"
            )
        prepared = []
        for index, message in enumerate(messages):
            field = f"messages[{index}]"
            if not isinstance(message, Mapping):
                raise ValidationError(field, f"must be a mapping, got {type(message).__name__}")
            unknown = set(message) - _MESSAGE_FIELDS
            if unknown:
                raise ValidationError(field, f"unknown keys {sorted(map(str, unknown))}")
            prepared.append(
                self.prepare(
                    keys,
                    role=message.get("role"),
                    content=message.get("content"),
                    message_id=message.get("message_id"),
                    metadata=message.get("metadata"),
                    subject_id=subject_id,
                    created_us=created_us,
                    field=field,
                )
            )
        return prepared

    def send(
        self,
        keys: SessionKeys,
        messages: list[Prepared],
        *,
        subject_id: str | None,
    ) -> list[AppendResult]:
        """Append ``messages`` (all or nothing): one EVALSHA warm, two and a durable read cold."""
        header, body = self.append_args(keys, messages, subject_id)
        reply = self._call(keys, [*header, "", *body], subject_id)
        if is_cold(reply):
            # Redis has forgotten the session (or never had it): read the store, call again.
            args, bound = self.cold_args(keys, header, body, self.durable(keys), subject_id)
            reply = self._call(keys, args, bound)
        return results(messages, reply)

    def restore(self, keys: SessionKeys, durable: DurableContext) -> None:
        """Re-warm a cold session from ``durable`` unless an append re-created it meanwhile."""
        self._call(keys, self.rewarm_args(keys, durable), durable.subject_id if durable else None)

    # The pure halves of a call, shared with AsyncAppender (core/log/async_appender.py).

    def append_args(
        self, keys: SessionKeys, messages: list[Prepared], subject_id: str | None
    ) -> tuple[list[str | int], list[str | int]]:
        """The header and the messages of an append.lua call (the warm call is
        ``[*header, "", *body]``)."""
        # The clock is read once per call: the messages' creation time is the script's "now".
        header = self._header(keys, len(messages), subject_id, messages[0].created_us // 1000)
        body: list[str | int] = []
        for message in messages:
            body += [message.message_id, message.body, message.tokens]
        return header, body

    def cold_args(
        self,
        keys: SessionKeys,
        header: list[str | int],
        body: list[str | int],
        durable: DurableContext | None,
        subject_id: str | None,
    ) -> tuple[list[str | int], str | None]:
        """The second call of a cold append: the messages and the session restored from
        ``durable``; and the subject the session binds (given, or the store's)."""
        restore = session_restore.restore_args(
            durable, tenant=keys.tenant, session_id=keys.session_id
        )
        bound = subject_id or (durable.subject_id if durable else None)
        return [*header, "1", *body, *restore], bound

    def rewarm_args(self, keys: SessionKeys, durable: DurableContext) -> list[str | int]:
        """The call that restores ``durable`` without appending (for ``context()``)."""
        restore = session_restore.restore_args(
            durable, tenant=keys.tenant, session_id=keys.session_id
        )
        header = self._header(keys, 0, None, time.time_ns() // 1_000_000)
        return [*header, "1", *restore]

    def script_keys(self, keys: SessionKeys, subject_id: str | None) -> list[str]:
        """append.lua's KEYS for a session (and the subject it binds, if any)."""
        # The subject's index key is only written when the session binds it (cold or first).
        index = self._keys.no_subject(keys.shard)
        if subject_id:
            index = self._keys.subject_sessions(keys.shard, keys.tenant, subject_id)
        return [
            keys.meta,
            keys.buffer,
            keys.recent_ids,
            keys.wal,
            keys.config,
            keys.summary_pending,
            *keys.shared_by_append(),
            index,
            keys.tenant_index,
        ]

    def durable(self, keys: SessionKeys) -> DurableContext | None:
        return session_restore.load(
            self._engine(),
            tenant=keys.tenant,
            session_id=keys.session_id,
            max_messages=self._settings.buffer_max_messages,
            max_tokens=self._settings.buffer_max_tokens,
        )

    def session_ttl_s(self, tenant: str) -> int:
        """The Redis TTL of a session of ``tenant``: never longer than its messages and
        summaries are kept (computed in process, so the warm path stays one EVALSHA)."""
        return self._retention.session_ttl_s(tenant, self._settings.session_ttl_s)

    def _header(
        self, keys: SessionKeys, count: int, subject_id: str | None, now_ms: int
    ) -> list[str | int]:
        settings = self._settings
        return [
            count,
            settings.buffer_max_messages,
            self.session_ttl_s(keys.tenant),
            settings.dedupe_window,
            subject_id or "",
            settings.summary_trigger_tokens,
            settings.buffer_max_tokens,
            now_ms,
            self._pending_ms,
            keys.member,
            keys.tenant,
            settings.max_wal_backlog,
            self._tenant_budget,
            str(settings.tenant_backlog_reserve),
        ]

    def _call(self, keys: SessionKeys, args: list[str | int], subject_id: str | None) -> Any:
        with redis_errors():
            return self._scripts.append(keys=self.script_keys(keys, subject_id), args=args)


def is_cold(reply: Any) -> bool:
    """True when append.lua found no session and wrote nothing (the cold path follows)."""
    return int(reply[0]) == -1


def results(messages: list[Prepared], reply: Any) -> list[AppendResult]:
    """append.lua's reply as one ``AppendResult`` per message: ``[crossed, seq, dup, ...]``
    (``crossed``: the 1-based index of the message that crossed the trigger, 0 for none)."""
    crossed = int(reply[0])
    return [
        AppendResult(
            message_id=message.message_id,
            seq=int(reply[1 + 2 * index]),
            tokens=message.tokens,
            duplicate=bool(int(reply[2 + 2 * index])),
            summary_triggered=crossed == index + 1,
        )
        for index, message in enumerate(messages)
    ]
