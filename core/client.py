"""The public API: ``MemoryClient``.

``append`` and ``append_many`` are the request path (``core/log/appender.py``): validation and
token counting in process, then exactly one Redis call (an EVALSHA of ``core/lua/append.lua``)
for a warm session. No PostgreSQL, no Celery publish: workers
drain the shard's write-ahead stream into the durable store behind the caller's back. When an
append crosses the session's summary trigger, the same call marks its WAL entry, and the
drainer enqueues the summary once that entry is durable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from core.errors import ConfigurationError, ValidationError
from core.log.appender import Appender
from core.models import (
    MEMORY_SETTING_FIELDS,
    AppendResult,
    Context,
    MemoryStats,
    SessionMemorySettings,
    memory_defaults,
    micros_to_datetime,
    validate_id,
)
from core.sessions import settings as session_settings
from core.store.codec import decode_buffer_item
from core.store.connections import redis_client
from core.store.connections import redis_from_url as redis_from_url  # re-exported: tests, scripts
from core.store.db import make_engine
from core.store.keys import Keys, SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts
from core.store.tokens import TokenCounter, token_counter
from core.summaries.budget import Budgets

# Sends a task by name with id-only arguments: ("llm.summarize", [tenant, session_id]). core/
# imports no Celery, so the app passes one in (tasks.llm.broker_enqueue builds the usual one).
Enqueue = Callable[[str, list[str]], None]
SUMMARIZE_TASK = "llm.summarize"


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
        self.keys = Keys.of(settings)
        self.tokens = tokens or token_counter(settings.tokenizer, settings.model)
        self.scripts = Scripts.register(redis)
        self.memory_defaults = memory_defaults(settings)
        self._engine = engine
        self._enqueue = enqueue
        self._pending_ms = int(settings.summary_pending_timeout_s * 1000)
        self._appender = Appender(
            redis=redis,
            scripts=self.scripts,
            settings=settings,
            tokens=self.tokens,
            engine=lambda: self.engine,
        )

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
        and writes nothing. Raises ``ValidationError`` (nothing written) for bad input,
        ``BackpressureError`` (retryable, nothing written) while Redis holds too much that is
        not yet durable. The first append of a session Redis does not hold costs one durable
        read and one more Redis call (``docs/sessions.md``).
        """
        keys = self._session_keys(tenant, session_id, subject_id)
        message = self._appender.prepare(
            keys,
            role=role,
            content=content,
            message_id=message_id,
            metadata=metadata,
            subject_id=subject_id,
            created_us=time.time_ns() // 1000,
        )
        [result] = self._appender.send(keys, [message], subject_id=subject_id)
        return result

    def append_many(
        self,
        session_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        tenant: str = "default",
        subject_id: str | None = None,
    ) -> list[AppendResult]:
        """Append several messages of one session in one Redis round trip, all or nothing.

        ``messages``: mappings with ``role``, ``content`` and optional ``message_id`` and
        ``metadata`` (1..1000 of them), e.g. an agent's tool call and its result. The same
        validation (errors name ``messages[i].<field>``) and idempotency as ``append``: a
        repeated ``message_id`` comes back with its original seq and ``duplicate=True``.
        """
        keys = self._session_keys(tenant, session_id, subject_id)
        prepared = self._appender.prepare_many(
            keys, messages, subject_id=subject_id, created_us=time.time_ns() // 1000
        )
        return self._appender.send(keys, prepared, subject_id=subject_id)

    def _session_keys(self, tenant: str, session_id: str, subject_id: str | None) -> SessionKeys:
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        if subject_id is not None:
            validate_id("subject_id", subject_id)
        return self.keys.session(tenant, session_id)

    def context(self, session_id: str, *, tenant: str = "default") -> Context:
        """The session's summary and the buffered messages after it, in one Redis round trip.

        When Redis has nothing for the session (expired, evicted, a restart without AOF), the
        durable store answers (the latest summary and the newest messages after it, within the
        buffer caps) and Redis is re-warmed so the next call is a hit.
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        keys = self.keys.session(tenant, session_id)
        with redis_errors():
            found = self.scripts.context(keys=[keys.meta, keys.buffer])
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
        keys = self.keys.session(tenant, session_id)
        durable = self._appender.durable(keys)
        if durable is None:
            return Context()
        self._appender.restore(keys, durable)
        summary = durable.summary
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
        call) and in the durable store, so they survive Redis forgetting the session. Two
        concurrent calls never lose each other's change. ``reset=True`` drops every override
        first. Returns the
        effective settings. Raises ``ValidationError`` (nothing written) when the result would
        break a rule, e.g. ``keep_recent_tokens`` not below ``summary_trigger_tokens``.
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        given = {
            "summary_trigger_tokens": summary_trigger_tokens,
            "buffer_max_tokens": buffer_max_tokens,
            "buffer_max_messages": buffer_max_messages,
            "keep_recent_tokens": keep_recent_tokens,
        }
        for name, value in given.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
        return session_settings.configure(
            self.engine,
            self.redis,
            self.keys.session(tenant, session_id),
            defaults=self.memory_defaults,
            overrides={
                MEMORY_SETTING_FIELDS[name]: value
                for name, value in given.items()
                if value is not None
            },
            reset=reset,
            ttl_s=self.settings.session_ttl_s,
        )

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
        with redis_errors():
            reply = self.scripts.summary_request(
                keys=[keys.meta, keys.summary_pending],
                args=[op, time.time_ns() // 1_000_000, self._pending_ms, keys.member, stamp],
            )
        return int(reply)

    def memory_stats(self, session_id: str, *, tenant: str = "default") -> MemoryStats:
        """Buffer size and tokens, summary count and time, pending flag, effective settings.

        One Redis round trip when the session is in Redis; a cold session is described from
        the durable store (its real ``last_seq``, unsummarized tokens, summaries and settings;
        nothing buffered), without re-warming it.
        """
        validate_id("tenant", tenant)
        validate_id("session_id", session_id)
        keys = self.keys.session(tenant, session_id)
        with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
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
        durable = self._appender.durable(keys)
        if durable is None:
            return MemoryStats(
                in_redis=False,
                last_seq=0,
                buffered_messages=0,
                buffered_tokens=0,
                unsummarized_tokens=0,
                covers_through_seq=0,
                summary_count=0,
                summary_tokens=0,
                last_summary_at=None,
                summary_pending=False,
                crossings=0,
                requests=0,
                settings=effective,
            )
        latest = durable.summary
        return MemoryStats(
            in_redis=False,
            last_seq=durable.last_seq,
            buffered_messages=0,
            buffered_tokens=0,
            unsummarized_tokens=durable.unsummarized_tokens,
            covers_through_seq=latest.covers_through_seq if latest else 0,
            summary_count=durable.summary_count,
            summary_tokens=latest.tokens if latest else 0,
            last_summary_at=latest.created_at if latest else None,
            summary_pending=False,
            crossings=0,
            requests=0,
            settings=self.memory_defaults.with_overrides(config or durable.settings),
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
        with redis_errors():
            Budgets(self.redis, self.keys, self.settings).set_budget(tenant, daily_tokens)

    def close(self) -> None:
        self.redis.close()
        if self._engine is not None:
            self._engine.dispose()
