"""The public API: ``MemoryClient``.

``append`` and ``append_many`` are the request path (``core/log/appender.py``): validation and
token counting in process, then one Redis call (an EVALSHA of ``core/lua/append.lua``) for a
warm session; no PostgreSQL, no Celery publish. Workers drain the WAL into the durable store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from core.crypto.vault import keyed_engine
from core.erasure.api import ErasureAPI
from core.errors import ConfigurationError, ValidationError
from core.log import context as session_context
from core.log import summary_request
from core.log.appender import Appender
from core.log.summary_request import SUMMARIZE_TASK as SUMMARIZE_TASK  # re-exported
from core.memories.context import memory_count, with_memories
from core.memories.service import Memories
from core.memories.unconsolidate import Unconsolidated, unconsolidate
from core.models import (
    AppendResult,
    Context,
    HistoryPage,
    Memory,
    MemoryStats,
    Priority,
    SessionMemorySettings,
    memory_defaults,
    validate_id,
)
from core.sessions import history as session_history
from core.sessions import settings as session_settings
from core.sessions import stats as session_stats
from core.state.api import StateAPI
from core.state.model import StateSchema
from core.store.connections import answers_ping, redis_client
from core.store.connections import redis_from_url as redis_from_url  # re-exported: tests, scripts
from core.store.keys import Keys, SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts
from core.store.tokens import TokenCounter, token_counter
from core.summaries.budget import Budgets
from core.summaries.store import SummaryRecord

Enqueue = Callable[[str, list[str]], None]


class MemoryClient(StateAPI, ErasureAPI):
    """Chat memory for one deployment. Thread-safe; share one per process. State methods are
    in ``core/state/api.py``, clearing and erasure in ``core/erasure/api.py``."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        settings: Settings,
        engine: Engine | None = None,
        tokens: TokenCounter | None = None,
        enqueue: Enqueue | None = None,
        state_schema: StateSchema | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys.of(settings)
        self.tokens = tokens or token_counter(settings.tokenizer, settings.model)
        self.scripts = Scripts.register(redis)
        self.memory_defaults = memory_defaults(settings)
        self._engine = engine
        self._engine_lock = threading.Lock()
        self._enqueue = enqueue
        self._pending_ms = int(settings.summary_pending_timeout_s * 1000)
        self._appender = Appender(
            redis=redis,
            scripts=self.scripts,
            settings=settings,
            tokens=self.tokens,
            engine=lambda: self.engine,
        )
        self._memories = Memories(
            redis=redis, scripts=self.scripts, settings=settings, engine=lambda: self.engine
        )
        self._init_state(state_schema)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        enqueue: Enqueue | None = None,
        state_schema: StateSchema | None = None,
    ) -> MemoryClient:
        """A client for the configured stores (``MEMSCRIBE_*``). ``enqueue`` (for
        ``request_summary``): ``tasks.llm.broker_enqueue(settings)``; ``state_schema``: the
        app's shape of state ``data`` (docs/state.md). (Tasks carry ids only.)"""
        settings = settings or get_settings()
        return cls(
            redis=redis_client(settings),
            settings=settings,
            enqueue=enqueue,
            state_schema=state_schema,
        )

    @property
    def engine(self) -> Engine:
        # Only the read-through path needs the durable store; connect on first use. Locked:
        # concurrent first uses (threads, AsyncMemoryClient's cold appends) share one engine.
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = keyed_engine(self.settings)
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

    def context(self, session_id: str, *, tenant: str = "default", memories: int = 0) -> Context:
        """The session's summary and the buffered messages after it, in one Redis round trip.

        When Redis has nothing for the session (expired, evicted, a restart without AOF), the
        durable store answers (the latest summary and the newest messages after it, within the
        buffer caps) and Redis is re-warmed so the next call is a hit.

        ``memories=k`` adds the top k long-term memories of the session's subject (ranked
        against the newest user message) that fit ``MEMSCRIBE_MEMORY_CONTEXT_TOKENS``: lower
        priorities go first, CRITICAL ones are always kept. The subject's memories live in
        their own slot: this costs a second Redis call and a third that counts the recall.
        """
        k = memory_count(memories)
        return self._with_memories(*self._context(session_id, tenant), tenant=tenant, k=k)

    def _with_memories(
        self, context: Context, subject: str | None, *, tenant: str, k: int
    ) -> Context:
        # Shared with AsyncMemoryClient.context, which runs it in a thread (recall is sync I/O).
        budget, count = self.settings.memory_context_tokens, self.tokens.count
        return with_memories(
            context, subject, self._memories, tenant=tenant, k=k, budget=budget, count=count
        )

    def _context(self, session_id: str, tenant: str) -> tuple[Context, str | None]:
        """The context and the session's subject."""
        return session_context.read(
            self.scripts, self._appender, self._session_keys(tenant, session_id, None)
        )

    # --- long-term memories (docs/memories.md) -------------------------------------------

    def remember(
        self,
        subject_id: str,
        content: str,
        *,
        tenant: str = "default",
        priority: str | Priority = "MEDIUM",
        tags: Iterable[str] = (),
        ttl_s: int | None = None,
        source: Mapping[str, Any] | str | None = None,
        memory_id: str | None = None,
        pinned: bool = False,
    ) -> str:
        """Keep a fact or preference about a data subject beyond any session; returns its id.

        One Redis round trip (the subject's view and the WAL); recallable at once, durable
        shortly after. Idempotent on ``memory_id``. ``priority``: LOW, MEDIUM, HIGH or
        CRITICAL (consolidation never touches CRITICAL or pinned memories). ``ttl_s``: decay
        after the last recall (default: the priority's, ``MEMSCRIBE_MEMORY_TTL_*``).
        ``source``: ``{"session_id", "from_seq", "to_seq"}``. Raises ``ValidationError``
        (nothing written) for bad input, ``BackpressureError`` like ``append``.
        """
        memory, _duplicate = self._memories.remember(
            subject_id,
            content,
            tenant=tenant,
            priority=priority,
            tags=tags,
            ttl_s=ttl_s,
            source=source,
            memory_id=memory_id,
            pinned=pinned,
        )
        return memory

    def recall(
        self,
        subject_id: str,
        *,
        tenant: str = "default",
        query: str | None = None,
        tags: Iterable[str] | None = None,
        min_priority: str | Priority | None = None,
        k: int = 10,
    ) -> list[Memory]:
        """The subject's ``k`` best live memories (never superseded, forgotten or decayed):
        ranked by relevance to ``query``, then priority and recency. ``tags``: only memories
        with all of them. Reads Redis only (a cold subject once from the store); the access
        is counted in Redis and reaches the store through the WAL."""
        return self._memories.recall(
            subject_id, tenant=tenant, query=query, tags=tags, min_priority=min_priority, k=k
        )

    def forget(self, memory_id: str, *, tenant: str | None = None) -> bool:
        """Forget a memory: gone from recall now, from the store once drained. A merged
        memory goes with the sources it folded; a source takes the merged memories that hold
        its content with it (their other sources come back). False when there is none."""
        return self._memories.forget(memory_id, tenant=tenant)

    def pin(self, memory_id: str, *, pinned: bool = True, tenant: str | None = None) -> bool:
        """Pin (or unpin) a memory: consolidation never touches it and it never decays."""
        return self._memories.update(memory_id, tenant=tenant, pinned=pinned)

    def set_priority(
        self, memory_id: str, priority: str | Priority, *, tenant: str | None = None
    ) -> bool:
        """Change a live memory's priority; False when there is no such memory."""
        return self._memories.update(memory_id, tenant=tenant, priority=priority)

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
        call) and in the durable store. Two concurrent calls never lose each other's change.
        ``reset=True`` drops every override first. Returns the effective settings. Raises
        ``ValidationError`` (nothing written) when the result would break a rule.
        """
        return session_settings.configure(
            self.engine,
            self.redis,
            self._session_keys(tenant, session_id, None),
            defaults=self.memory_defaults,
            overrides=session_settings.overrides_given(
                summary_trigger_tokens=summary_trigger_tokens,
                buffer_max_tokens=buffer_max_tokens,
                buffer_max_messages=buffer_max_messages,
                keep_recent_tokens=keep_recent_tokens,
            ),
            reset=reset,
            ttl_s=self._appender.session_ttl_s(tenant),
        )

    def request_summary(self, session_id: str, *, tenant: str = "default") -> bool:
        """Ask for a summary of this session now, without waiting for the trigger.

        Idempotent while one is pending: True when this call marked the session and sent
        ``llm.summarize``, False when a summary was already pending (or the session is unknown).
        """
        keys = self._session_keys(tenant, session_id, None)
        if self._enqueue is None:
            raise ConfigurationError(
                "request_summary needs a way to send tasks: "
                "MemoryClient.from_settings(enqueue=tasks.llm.broker_enqueue(settings))"
            )
        return summary_request.request(
            self.scripts, self._appender, keys, enqueue=self._enqueue, pending_ms=self._pending_ms
        )

    def memory_stats(self, session_id: str, *, tenant: str = "default") -> MemoryStats:
        """Buffer size and tokens, summary count and time, pending flag, effective settings.
        One Redis round trip; a cold session is described from the durable store (nothing
        buffered), without re-warming it."""
        return session_stats.memory_stats(
            self.redis,
            self._session_keys(tenant, session_id, None),
            defaults=self.memory_defaults,
            load_durable=self._appender.durable,
        )

    # --- scroll-back and health (docs/sessions.md) ------------------------------------------

    def history(
        self,
        session_id: str,
        *,
        tenant: str = "default",
        before_seq: int | None = None,
        limit: int = 50,
    ) -> HistoryPage:
        """Scroll-back: the newest ``limit`` (1..1000) messages with ``seq < before_seq`` (None:
        the newest), oldest first, wherever they are (the Redis buffer, the WAL, the durable
        store). Reads only: one Redis call when the page is inside the buffer, plus one indexed
        durable query otherwise. Pass ``next_before_seq`` back for the page before."""
        keys = self._session_keys(tenant, session_id, None)
        before_seq, limit = session_history.validate_page(before_seq, limit)
        return session_history.page(
            self.redis, self.scripts, lambda: self.engine, keys, before_seq=before_seq, limit=limit
        )

    def get_summary_history(
        self, session_id: str, *, tenant: str = "default", limit: int = 10
    ) -> list[SummaryRecord]:
        """The session's stored summaries, newest first (at most ``limit``, 1..1000)."""
        keys = self._session_keys(tenant, session_id, None)
        return session_history.summaries(self.engine, keys, limit=limit)

    def is_available(self) -> bool:
        """True when Redis answers a PING within 0.5 s; never raises (for health checks)."""
        return answers_ping(self.redis, timeout_s=0.5)

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

    def unconsolidate(self, memory_id: str, *, tenant: str | None = None) -> Unconsolidated:
        """Undo a consolidation merge: the sources are live again, the merged memory goes."""
        return unconsolidate(self.redis, self.engine, self.settings, memory_id, tenant=tenant)
