"""The public API: ``MemoryClient``.

``append`` is the request path: validation and token counting in process, then exactly one
Redis call (an EVALSHA of ``core/lua/append.lua``). No PostgreSQL, no Celery publish: workers
drain the shard's write-ahead stream into the durable store behind the caller's back. When an
append crosses the session's summary trigger, the same call marks its WAL entry, and the
drainer enqueues the summary once that entry is durable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from core import summary_store
from core.budget import Budgets
from core.codec import buffer_item, decode_buffer_item, encode_message
from core.connections import redis_client
from core.connections import redis_from_url as redis_from_url  # re-exported: tests, scripts
from core.db import make_engine
from core.errors import ConfigurationError, TransientError, ValidationError
from core.keys import Keys
from core.models import (
    MEMORY_SETTING_FIELDS,
    AppendResult,
    Context,
    MemoryStats,
    SessionMemorySettings,
    memory_defaults,
    micros_to_datetime,
    new_message_id,
    validate_content,
    validate_id,
    validate_memory_settings,
    validate_metadata,
    validate_role,
)
from core.scripts import Scripts
from core.tokens import TokenCounter, token_counter

# Sends a task by name with id-only arguments: ("llm.summarize", [tenant, session_id]). core/
# imports no Celery, so the app passes one in (tasks.llm.broker_enqueue builds the usual one).
Enqueue = Callable[[str, list[str]], None]
SUMMARIZE_TASK = "llm.summarize"


@contextmanager
def _redis_errors() -> Iterator[None]:
    """Redis connection failures as ``TransientError`` (safe to retry)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise TransientError(f"Redis unavailable: {exc}") from exc


class MemoryClient:
    """Chat memory for one deployment. Thread-safe; share one per process."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        settings: Settings,
        engine: Engine | None = None,
        tokens: TokenCounter | None = None,
        enqueue: Enqueue | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix, settings.shards)
        self.tokens = tokens or token_counter(settings.tokenizer, settings.model)
        self.scripts = Scripts.register(redis)
        self.memory_defaults = memory_defaults(settings)
        self._engine = engine
        self._enqueue = enqueue
        self._pending_ms = int(settings.summary_pending_timeout_s * 1000)

    @classmethod
    def from_settings(
        cls, settings: Settings | None = None, *, enqueue: Enqueue | None = None
    ) -> MemoryClient:
        """A client for the configured Redis and durable store (``MEMSCRIBE_*``).

        ``enqueue`` is needed only by ``request_summary``: pass
        ``tasks.llm.broker_enqueue(settings)`` (or any function that sends a Celery task).
        """
        settings = settings or get_settings()
        return cls(redis=redis_client(settings), settings=settings, enqueue=enqueue)

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
        now_ns = time.time_ns()
        body = encode_message(
            message_id=message_id,
            tenant=tenant,
            session_id=session_id,
            role=role,
            content=content,
            tokens=tokens,
            created_us=now_ns // 1000,
            subject_id=subject_id,
            metadata=metadata,
        )
        try:
            seq, duplicate, _buffered, _unsummarized, crossed = self.scripts.append(
                keys=[
                    keys.meta,
                    keys.buffer,
                    keys.recent_ids,
                    keys.wal,
                    keys.config,
                    keys.summary_pending,
                ],
                args=[
                    message_id,
                    body,
                    tokens,
                    settings.buffer_max_messages,
                    settings.session_ttl_s,
                    settings.dedupe_window,
                    subject_id or "",
                    settings.summary_trigger_tokens,
                    settings.buffer_max_tokens,
                    now_ns // 1_000_000,
                    self._pending_ms,
                    keys.member,
                ],
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("SUBJECT"):
                raise ValidationError("subject_id", str(exc).removeprefix("SUBJECT ")) from None
            raise
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise TransientError(f"Redis unavailable: {exc}") from exc
        return AppendResult(
            message_id=message_id,
            seq=int(seq),
            tokens=tokens,
            duplicate=bool(duplicate),
            summary_triggered=bool(crossed),
        )

    def context(self, session_id: str, *, tenant: str = "default") -> Context:
        """The session's summary and the buffered messages after it, in one Redis round trip.

        When Redis has nothing for the session (expired, evicted, a restart without AOF), the
        durable store answers (the latest summary and the newest messages after it, within the
        buffer caps) and Redis is re-warmed so the next call is a hit.
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
            messages = [decode_buffer_item(item) for item in items]
            covered = int(meta.get("cov", 0))
            last = int(meta.get("seq", 0))
            first = messages[0].seq if messages else last + 1
            summary_tokens = int(meta.get("stok", 0)) if "summary" in meta else 0
            return Context(
                messages=messages,
                summary=meta.get("summary"),
                tokens=summary_tokens + int(meta.get("tok", 0)),
                summary_tokens=summary_tokens,
                covers_through_seq=covered,
                omitted_messages=max(0, first - covered - 1),
            )
        return self._read_through(tenant=tenant, session_id=session_id)

    def _read_through(self, *, tenant: str, session_id: str) -> Context:
        durable = summary_store.load_context(
            self.engine,
            tenant=tenant,
            session_id=session_id,
            max_messages=self.settings.buffer_max_messages,
            max_tokens=self.settings.buffer_max_tokens,
        )
        if durable is None:
            return Context()
        keys = self.keys.session(tenant, session_id)
        summary = durable.summary
        args: list[str | int] = [
            durable.last_seq,
            self.settings.session_ttl_s,
            durable.subject_id or "",
            summary.covers_through_seq if summary else 0,
            summary.text if summary else "",
            summary.tokens if summary else 0,
            durable.unsummarized_tokens,
            durable.summary_count,
            int(summary.created_at.timestamp() * 1000) if summary else 0,
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
        summary_tokens = summary.tokens if summary else 0
        return Context(
            messages=durable.messages,
            summary=summary.text if summary else None,
            tokens=summary_tokens + sum(message.tokens for message in durable.messages),
            from_durable_store=True,
            summary_tokens=summary_tokens,
            covers_through_seq=summary.covers_through_seq if summary else 0,
            omitted_messages=durable.unsummarized_messages - len(durable.messages),
        )

    # --- summaries ---------------------------------------------------------------------------

    def configure_session(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        summary_trigger_tokens: int | None = None,
        buffer_max_tokens: int | None = None,
        buffer_max_messages: int | None = None,
        keep_recent_tokens: int | None = None,
        reset: bool = False,
    ) -> SessionMemorySettings:
        """Override this session's memory settings (the rest keep the global defaults).

        The overrides live in Redis beside the session (``append`` reads them inside its one
        call) and expire with it. ``reset=True`` drops every override first. Returns the
        effective settings. Raises ``ValidationError`` (nothing written) when the result would
        break a rule, e.g. ``keep_recent_tokens`` not below ``summary_trigger_tokens``.
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        keys = self.keys.session(tenant, session_id)
        with _redis_errors():
            stored: dict[str, str] = {} if reset else self.redis.hgetall(keys.config)  # type: ignore[assignment]
        given = {
            "summary_trigger_tokens": summary_trigger_tokens,
            "buffer_max_tokens": buffer_max_tokens,
            "buffer_max_messages": buffer_max_messages,
            "keep_recent_tokens": keep_recent_tokens,
        }
        overrides = {
            MEMORY_SETTING_FIELDS[name]: value for name, value in given.items() if value is not None
        }
        for name, value in given.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
        merged: dict[Any, Any] = {**stored, **{k: str(v) for k, v in overrides.items()}}
        effective = validate_memory_settings(self.memory_defaults.with_overrides(merged))
        with _redis_errors(), self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.config)
            if merged:
                pipe.hset(keys.config, mapping=merged)
                pipe.expire(keys.config, self.settings.session_ttl_s)
            pipe.execute()
        return effective

    def request_summary(self, session_id: str, *, tenant: str = "default") -> bool:
        """Ask for a summary of this session now, without waiting for the trigger.

        Idempotent while one is pending: returns True when this call marked the session and
        sent ``llm.summarize``, False when a summary was already pending (or the session is
        unknown). A summary with nothing to fold (everything fits in ``keep_recent_tokens``)
        settles without an LLM call.
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        if self._enqueue is None:
            raise ConfigurationError(
                "request_summary needs a way to send tasks: "
                "MemoryClient.from_settings(enqueue=tasks.llm.broker_enqueue(settings))"
            )
        keys = self.keys.session(tenant, session_id)
        stamp = self._request(keys, "request")
        if stamp == -1 and self.context(session_id, tenant=tenant).from_durable_store:
            stamp = self._request(keys, "request")  # re-warmed from the durable store
        if stamp <= 0:
            return False
        try:
            self._enqueue(SUMMARIZE_TASK, [tenant, session_id])
        except Exception:
            # Not sent: take the mark back, or the session would wait for the pending timeout.
            self._request(keys, "cancel", stamp=stamp)
            raise
        return True

    def _request(self, keys: Any, op: str, *, stamp: int = 0) -> int:
        with _redis_errors():
            reply = self.scripts.summary_request(
                keys=[keys.meta, keys.summary_pending],
                args=[op, time.time_ns() // 1_000_000, self._pending_ms, keys.member, stamp],
            )
        return int(reply)

    def memory_stats(self, session_id: str, *, tenant: str = "default") -> MemoryStats:
        """Buffer size and tokens, summary count and time, pending flag, effective settings.

        One Redis round trip when the session is in Redis; a cold session is described from
        the durable store (without re-warming it).
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        keys = self.keys.session(tenant, session_id)
        with _redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.meta)
            pipe.llen(keys.buffer)
            pipe.hgetall(keys.config)
            meta, length, config = pipe.execute()
        effective = self.memory_defaults.with_overrides(config)
        if meta:
            until = int(meta.get("pend", 0))
            at_ms = int(meta.get("sat", 0))
            return MemoryStats(
                in_redis=True,
                last_seq=int(meta.get("seq", 0)),
                buffered_messages=int(length),
                buffered_tokens=int(meta.get("tok", 0)),
                unsummarized_tokens=int(meta.get("utok", 0)),
                covers_through_seq=int(meta.get("cov", 0)),
                summary_count=int(meta.get("nsum", 0)),
                summary_tokens=int(meta.get("stok", 0)),
                last_summary_at=micros_to_datetime(at_ms * 1000) if at_ms else None,
                summary_pending=until > 0,
                crossings=int(meta.get("xc", 0)),
                requests=int(meta.get("rq", 0)),
                settings=effective,
            )
        count, latest = summary_store.summary_history_stats(
            self.engine, tenant=tenant, session_id=session_id
        )
        return MemoryStats(
            in_redis=False,
            last_seq=0,
            buffered_messages=0,
            buffered_tokens=0,
            unsummarized_tokens=0,
            covers_through_seq=latest.covers_through_seq if latest else 0,
            summary_count=count,
            summary_tokens=latest.tokens if latest else 0,
            last_summary_at=latest.created_at if latest else None,
            summary_pending=False,
            crossings=0,
            requests=0,
            settings=effective,
        )

    def set_daily_token_budget(self, tenant: str, daily_tokens: int | None) -> None:
        """Override ``MEMSCRIBE_TENANT_DAILY_TOKEN_BUDGET`` for one tenant (0: no limit; None:
        back to the default). Once a tenant's summaries spend it in a UTC day, further
        summaries are deferred until the next day (``memscribe status`` lists them)."""
        validate_id("tenant", tenant)
        if daily_tokens is not None and (
            not isinstance(daily_tokens, int) or isinstance(daily_tokens, bool) or daily_tokens < 0
        ):
            raise ValidationError("daily_tokens", f"must be an integer >= 0, got {daily_tokens!r}")
        with _redis_errors():
            Budgets(self.redis, self.keys, self.settings).set_budget(tenant, daily_tokens)

    def close(self) -> None:
        self.redis.close()
        if self._engine is not None:
            self._engine.dispose()
