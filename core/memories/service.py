"""remember, recall, forget, pin and priority changes: what ``MemoryClient`` does for
long-term memories.

``remember`` is the request path: validated in process, then one ``EVALSHA`` of
``core/lua/remember.lua`` (the subject's view and the WAL, one slot). A subject whose view
Redis does not hold costs one durable read and one more call, like a forgotten session.
``recall`` reads the view (one round trip), ranks in process, and counts the accesses in
Redis and the WAL (a second call); it never writes PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from sqlalchemy import Engine, select

from config.settings import Settings
from core.errors import ConfigurationError, TransientError, ValidationError
from core.memories import ranking, view
from core.memories.embeddings import Embedder, embedder_from_settings
from core.memories.model import (
    validate_memory_content,
    validate_priority,
    validate_source,
    validate_tags,
    validate_ttl,
)
from core.memories.records import ViewEntry, effective_ttl_s, encode_record, live_value, parse_live
from core.models import Memory, Priority, new_message_id, validate_id
from core.retention.policy import MEMORY_KINDS, RetentionPolicy
from core.store.db import memories as memories_table
from core.store.db_errors import translate_errors
from core.store.keys import Keys, SubjectKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

log = logging.getLogger(__name__)

RECALL_MAX_K = 1000
# Embeds a recall's query when embeddings are configured (None: lexical relevance only).
QueryEmbedder = Callable[[str], Sequence[float]]


class Memories:
    """Long-term memories of one deployment. Thread-safe; owned by a ``MemoryClient``."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        scripts: Scripts,
        settings: Settings,
        engine: Callable[[], Engine],
        embed_query: QueryEmbedder | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._settings = settings
        self._keys = Keys.of(settings)
        # Reached only on a cold subject and by forget/pin of a memory already durable.
        self._engine = engine
        self._embed_query = embed_query
        if embed_query is None and settings.embeddings != "none":
            self._embed_query = LazyQueryEmbedder(settings)
        self._tenant_budget = settings.tenant_budget_per_shard
        self._retention = RetentionPolicy.of(settings)

    def _cache_ttl_s(self, tenant: str) -> int:
        # The subject's Redis view never outlives the shortest retention of its memories.
        return self._retention.redis_ttl_s(tenant, self._settings.memory_cache_ttl_s, *MEMORY_KINDS)

    def subject_keys(self, tenant: str, subject_id: str) -> SubjectKeys:
        validate_id("tenant", tenant)
        validate_id("subject_id", subject_id)
        return self._keys.subject(tenant, subject_id)

    # --- remember ----------------------------------------------------------------------------

    def remember(
        self,
        subject_id: str,
        content: str,
        *,
        tenant: str,
        priority: object = "MEDIUM",
        tags: object = (),
        ttl_s: object = None,
        source: object = None,
        memory_id: object = None,
        pinned: bool = False,
    ) -> tuple[str, bool]:
        """Returns (memory_id, duplicate)."""
        keys = self.subject_keys(tenant, subject_id)
        settings = self._settings
        checked_id = validate_id("memory_id", memory_id or new_message_id())
        checked_content = validate_memory_content(content, max_bytes=settings.max_memory_bytes)
        level = validate_priority(priority)
        checked_tags = validate_tags(tags, max_tags=settings.max_memory_tags)
        own_ttl = validate_ttl(ttl_s)
        provenance = validate_source(source)
        if not isinstance(pinned, bool):
            raise ValidationError("pinned", f"must be a bool, got {type(pinned).__name__}")
        record = encode_record(
            memory_id=checked_id,
            tenant=tenant,
            subject_id=subject_id,
            content=checked_content,
            tags=checked_tags,
            created_us=time.time_ns() // 1000,
            ttl_s=own_ttl,
            provenance=provenance,
        )
        header: list[str | int] = [
            checked_id,
            live_value(level, pinned, record),
            tenant,
            f"{tenant}/{subject_id}",
            self._cache_ttl_s(tenant),
            settings.max_wal_backlog,
            self._tenant_budget,
            str(settings.tenant_backlog_reserve),
            effective_ttl_s(settings, level, pinned, own_ttl),
        ]
        reply = self._remember(keys, [*header, ""])
        if int(reply[0]) == -1:
            durable = view.load(self._engine(), keys)
            reply = self._remember(keys, [*header, "1", *durable.flat()])
        return checked_id, int(reply[0]) == 1

    def _remember(self, keys: SubjectKeys, args: list[str | int]) -> Any:
        with redis_errors():
            return self._scripts.remember(
                keys=[
                    keys.memories,
                    keys.wal,
                    keys.pending_ids,
                    keys.tenant_bytes,
                    keys.pressure,
                    keys.accessed,
                    keys.embeddings,
                ],
                args=args,
            )

    # --- recall ------------------------------------------------------------------------------

    def recall(
        self,
        subject_id: str,
        *,
        tenant: str,
        query: object = None,
        tags: object = None,
        min_priority: object = None,
        k: object = 10,
    ) -> list[Memory]:
        keys = self.subject_keys(tenant, subject_id)
        if query is not None and not isinstance(query, str):
            raise ValidationError("query", f"must be a string or None, got {type(query).__name__}")
        if (
            query is not None
            and len(query.encode("utf-8", "replace")) > self._settings.max_memory_bytes
        ):
            raise ValidationError(
                "query", f"is longer than {self._settings.max_memory_bytes} bytes"
            )
        wanted = (
            None
            if tags is None
            else frozenset(validate_tags(tags, max_tags=self._settings.max_memory_tags))
        )
        floor = None if min_priority is None else validate_priority(min_priority, "min_priority")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= RECALL_MAX_K:
            raise ValidationError("k", f"must be an integer 1..{RECALL_MAX_K}, got {k!r}")
        use_vectors = bool(query) and self._embed_query is not None
        found = self._read_view(keys, embeddings=use_vectors)
        now_ms = time.time_ns() // 1_000_000
        candidates = ranking.live_candidates(
            _live_entries(found.values),
            found.accessed,
            settings=self._settings,
            now_ms=now_ms,
            tags=wanted,
            min_priority=floor,
        )
        query_vector = None
        vectors: dict[str, list[float]] = {}
        if use_vectors and found.embeddings and self._embed_query is not None:
            try:
                query_vector = self._embed_query(str(query))
            except TransientError as exc:
                # Recall still answers while the embeddings server is away: lexically.
                log.warning("recall ranks lexically: the query embedding failed: %s", exc)
            else:
                vectors = {
                    memory_id: vector
                    for memory_id, raw in found.embeddings.items()
                    if len(vector := json.loads(raw)) == len(query_vector)
                }
        chosen = ranking.rank(
            candidates,
            query=query or None,
            now_ms=now_ms,
            k=k,
            query_vector=query_vector,
            vectors=vectors,
        )
        if chosen:
            self._touch(keys, chosen, now_ms)
        return chosen

    def _read_view(self, keys: SubjectKeys, *, embeddings: bool = False) -> view.View:
        """The subject's view; one durable read and a warm-up first when Redis lacks it."""
        found = view.read(self._redis, keys, embeddings=embeddings)
        if found.complete:
            return found
        view.warm(
            self._redis,
            self._scripts,
            self._engine(),
            keys,
            ttl_s=self._cache_ttl_s(keys.tenant),
        )
        return view.read(self._redis, keys, embeddings=embeddings)

    def _touch(self, keys: SubjectKeys, chosen: Iterable[Memory], now_ms: int) -> None:
        settings = self._settings
        accesses: list[tuple[str, int]] = [
            (m.memory_id, effective_ttl_s(settings, m.level, m.pinned, m.ttl_s)) for m in chosen
        ]
        with redis_errors():
            self._scripts.memory_touch(
                keys=[keys.accessed, keys.wal, keys.memories, keys.embeddings],
                args=[
                    now_ms,
                    keys.tenant,
                    keys.subject_id,
                    self._cache_ttl_s(keys.tenant),
                    json.dumps(accesses, separators=(",", ":")),
                    *(pair[0] for pair in accesses),
                ],
            )

    # --- forget, pin, priority ---------------------------------------------------------------

    def locate(self, memory_id: object, tenant: str | None) -> SubjectKeys | None:
        """The subject a memory belongs to: the shards' index of memories not yet durable,
        then the store. None when no such memory exists (in ``tenant``, when given)."""
        checked = validate_id("memory_id", memory_id)
        if tenant is not None:
            validate_id("tenant", tenant)
        with redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys.all_pending_memory_ids():
                pipe.hget(key, checked)
            owners = [owner for owner in pipe.execute() if owner]
        if owners:
            owner_tenant, subject_id = str(owners[0]).split("/", 1)
        else:
            with translate_errors(), self._engine().connect() as connection:
                row = connection.execute(
                    select(memories_table.c.tenant, memories_table.c.subject_id).where(
                        memories_table.c.memory_id == checked
                    )
                ).first()
            if row is None:
                return None
            owner_tenant, subject_id = row.tenant, row.subject_id
        if tenant is not None and owner_tenant != tenant:
            return None
        return self._keys.subject(owner_tenant, subject_id)

    def forget(self, memory_id: object, *, tenant: str | None = None) -> bool:
        """Forget a memory (and what holds its content: see ``memory_change.lua``)."""
        keys = self.locate(memory_id, tenant)
        if keys is None:
            return False
        return self._change(keys, ["forget", str(memory_id), "", keys.tenant, keys.subject_id, 0])

    def update(
        self,
        memory_id: object,
        *,
        tenant: str | None = None,
        priority: object = None,
        pinned: object = None,
    ) -> bool:
        """Change a live memory's priority and/or pin; False when there is no such memory."""
        level = None if priority is None else validate_priority(priority)
        if pinned is not None and not isinstance(pinned, bool):
            raise ValidationError("pinned", f"must be a bool, got {type(pinned).__name__}")
        keys = self.locate(memory_id, tenant)
        if keys is None:
            return False
        found = self._read_view(keys)
        current = parse_live(str(memory_id), found.values.get(str(memory_id), ""))
        if current is None:
            return False
        new_level = level or current.priority
        new_pin = current.pinned if pinned is None else pinned
        decay = effective_ttl_s(self._settings, new_level, new_pin, current.record.get("ttl"))
        prefix = f"{int(new_level)}{int(new_pin)}"
        return self._change(
            keys, ["set", str(memory_id), prefix, keys.tenant, keys.subject_id, decay]
        )

    def _change(self, keys: SubjectKeys, args: list[str | int]) -> bool:
        script_keys = [keys.memories, keys.wal, keys.accessed, keys.embeddings]
        ttl = self._cache_ttl_s(keys.tenant)
        with redis_errors():
            reply = self._scripts.memory_change(keys=script_keys, args=[*args, ttl, ""])
        if int(reply[0]) == -1:
            durable = view.load(self._engine(), keys)
            with redis_errors():
                reply = self._scripts.memory_change(
                    keys=script_keys, args=[*args, ttl, "1", *durable.flat()]
                )
        return int(reply[0]) == 1


class LazyQueryEmbedder:
    """The configured embedder, built on the first recall with a query (a local model loads
    in seconds; a client that never recalls with a query never pays for it)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    def __call__(self, query: str) -> Sequence[float]:
        with self._lock:
            if self._embedder is None:
                self._embedder = embedder_from_settings(self._settings)
        if self._embedder is None:
            raise ConfigurationError("MEMSCRIBE_EMBEDDINGS is none")
        return self._embedder.embed([query])[0]


def _live_entries(values: dict[str, str]) -> list[ViewEntry]:
    entries = []
    for memory_id, value in values.items():
        entry = parse_live(memory_id, value)
        if entry is not None:
            entries.append(entry)
    return entries


__all__ = ["Memories", "Priority"]
