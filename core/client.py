"""The public API: ``MemoryClient``.

``append`` is the request path: validation and token counting in process, then exactly one
Redis call (an EVALSHA of ``core/lua/append.lua``). No PostgreSQL, no Celery publish: workers
drain the shard's write-ahead stream into the durable store behind the caller's back.
"""

from __future__ import annotations

import time
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from core import repository
from core.codec import buffer_item, decode_buffer_item, encode_message
from core.db import make_engine
from core.errors import TransientError, ValidationError
from core.keys import Keys
from core.models import (
    AppendResult,
    Context,
    new_message_id,
    validate_content,
    validate_id,
    validate_metadata,
    validate_role,
)
from core.scripts import Scripts
from core.tokens import TokenCounter, token_counter


def redis_from_url(url: str, **kwargs: Any) -> redis.Redis:
    """memscribe's Redis client: text replies, and no handshake chatter on the request path."""
    client: redis.Redis = redis.Redis.from_url(url, decode_responses=True, **kwargs)
    return client


class MemoryClient:
    """Chat memory for one deployment. Thread-safe; share one per process."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        settings: Settings,
        engine: Engine | None = None,
        tokens: TokenCounter | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.tokens = tokens or token_counter(settings.tokenizer, settings.model)
        self.scripts = Scripts.register(redis)
        self._engine = engine

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> MemoryClient:
        """A client for the configured Redis and durable store (``MEMSCRIBE_*``)."""
        settings = settings or get_settings()
        return cls(redis=redis_from_url(settings.redis_url), settings=settings)

    @property
    def engine(self) -> Engine:
        # Only the read-through path needs the durable store; connect on first use.
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    def append(
        self,
        session_id: str,
        role: str,
        content: str,
        *,
        tenant: str = "default",
        subject_id: str | None = None,
        message_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AppendResult:
        """Append one message to a session. One Redis round trip; durable shortly after.

        Retrying with the same ``message_id`` returns the original ``seq`` (``duplicate=True``)
        and writes nothing. Raises ``ValidationError`` (nothing written) for bad input.
        """
        settings = self.settings
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        if subject_id is not None:
            validate_id("subject_id", subject_id)
        message_id = validate_id("message_id", message_id or new_message_id())
        validate_role(role)
        validate_content(content, max_bytes=settings.max_content_bytes)
        validate_metadata(metadata, max_bytes=settings.max_metadata_bytes)

        tokens = self.tokens.count_message(role, content)
        keys = self.keys.session(tenant, session_id)
        body = encode_message(
            message_id=message_id,
            tenant=tenant,
            session_id=session_id,
            role=role,
            content=content,
            tokens=tokens,
            created_us=time.time_ns() // 1000,
            subject_id=subject_id,
            metadata=metadata,
        )
        try:
            seq, duplicate, _buffered = self.scripts.append(
                keys=[keys.meta, keys.buffer, keys.recent_ids, keys.wal],
                args=[
                    message_id,
                    body,
                    tokens,
                    settings.buffer_max_messages,
                    settings.session_ttl_s,
                    settings.dedupe_window,
                    subject_id or "",
                ],
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("SUBJECT"):
                raise ValidationError("subject_id", str(exc).removeprefix("SUBJECT ")) from None
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransientError(f"Redis unavailable: {exc}") from exc
        return AppendResult(
            message_id=message_id, seq=int(seq), tokens=tokens, duplicate=bool(duplicate)
        )

    def context(self, session_id: str, *, tenant: str = "default") -> Context:
        """The session's summary and recent messages, in one Redis round trip.

        When Redis has nothing for the session (expired, evicted, a restart without AOF), the
        durable store answers and Redis is re-warmed so the next call is a hit.
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        keys = self.keys.session(tenant, session_id)
        try:
            found = self.scripts.context(keys=[keys.meta, keys.buffer])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransientError(f"Redis unavailable: {exc}") from exc
        if found:
            flat, items = found
            meta = dict(zip(flat[::2], flat[1::2], strict=True))
            return Context(
                messages=[decode_buffer_item(item) for item in items],
                summary=meta.get("summary"),
                tokens=int(meta.get("tok", 0)),
            )
        return self._read_through(tenant=tenant, session_id=session_id)

    def _read_through(self, *, tenant: str, session_id: str) -> Context:
        durable = repository.load_recent(
            self.engine,
            tenant=tenant,
            session_id=session_id,
            limit=self.settings.buffer_max_messages,
        )
        if durable is None:
            return Context()
        keys = self.keys.session(tenant, session_id)
        args: list[str | int] = [
            durable.last_seq,
            self.settings.session_ttl_s,
            durable.subject_id or "",
        ]
        for message in durable.messages:
            body = encode_message(
                message_id=message.message_id,
                tenant=tenant,
                session_id=session_id,
                role=message.role,
                content=message.content,
                tokens=message.tokens,
                created_us=int(message.created_at.timestamp() * 1_000_000),
                subject_id=durable.subject_id,
                metadata=message.metadata,
            )
            args += [buffer_item(message.seq, message.tokens, body), message.message_id]
        self.scripts.warm(keys=[keys.meta, keys.buffer, keys.recent_ids], args=args)
        return Context(
            messages=durable.messages,
            tokens=sum(message.tokens for message in durable.messages),
            from_durable_store=True,
        )

    def close(self) -> None:
        self.redis.close()
        if self._engine is not None:
            self._engine.dispose()
