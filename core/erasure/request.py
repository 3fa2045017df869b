"""What ``erase_subject`` and ``erase_tenant`` do before they return (the erasure's barrier).

When these steps are done (receipt stage ``queued``) nothing of before can be written again,
whatever was in flight: every session of the subject has its floors in the store (the drainer,
summaries and state compare against them under the session row's lock), every memory id of
the subject is tombstoned (the drainer drops a remember of one under the subject's advisory
lock), the data keys are destroyed, and Redis no longer holds the subject's content. The
rest (deleting the rows under the floors, scrubbing the WAL and the dead letters, rewriting
Redis's AOF) is the ``maintenance.erase`` task's, which carries the receipt id only.

Steps run in an order that lets a replay of the same ``request_id`` redo them: each is
idempotent, and a receipt still at stage ``requested`` is finished by the replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import redis
from sqlalchemy import Engine, delete, select, text

from config.settings import Settings
from core.cache.erase import erase_tenant_namespaces
from core.cache.multilevel import Cache
from core.checkpoints import erase as checkpoints_erase
from core.erasure import receipts
from core.erasure.receipts import QUEUED, SUBJECT, TENANT, Receipt
from core.erasure.sessions import EVERYTHING, SessionClearer
from core.memories.wal import subject_lock_key
from core.models import validate_id
from core.store.db import (
    insert_for,
    memories,
    memory_lineage,
    memory_tombstones,
    sessions,
    write_lock,
)
from core.store.db_errors import translate_errors
from core.store.keys import Keys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

# How long the Redis tombstone of a subject's erasure is kept (verify reads it).
TOMBSTONE_TTL_S = 400 * 24 * 3600
DestroyKeys = Callable[[str, str | None], list[str]]


def subject_cache_tag(tenant: str, subject_id: str) -> str:
    """The shared cache's tag for values that hold a subject's data: an app that caches them
    with ``Cache.set(..., tags=[subject_cache_tag(tenant, subject_id)])`` has them dropped,
    in every process, by the subject's erasure."""
    return f"subject:{tenant}/{subject_id}"


def tenant_cache_tag(tenant: str) -> str:
    """The same for a whole tenant (erase_tenant)."""
    return f"tenant:{tenant}"


class ErasureRequests:
    """The request-time half of erasure for one deployment."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        scripts: Scripts,
        engine: Callable[[], Engine],
        settings: Settings,
        destroy_keys: DestroyKeys | None = None,
    ) -> None:
        self._redis = redis
        self._scripts = scripts
        self._engine = engine
        self._settings = settings
        self._keys = Keys.of(settings)
        # (tenant, subject_id or None for the whole tenant) -> key ids destroyed.
        self._destroy_keys = destroy_keys
        self._cache = Cache(redis=redis, settings=settings)

    def subject(self, subject_id: str, *, tenant: str, request_id: str) -> Receipt:
        validate_id("subject_id", subject_id)
        validate_id("tenant", tenant)
        validate_id("request_id", request_id)
        ref = receipts.subject_ref(self._settings, tenant, subject_id)
        engine = self._engine()
        receipt, _created = receipts.open_receipt(
            engine, request_id=request_id, scope=SUBJECT, tenant=tenant, ref=ref
        )
        if receipt.stage != receipts.REQUESTED:
            return receipt  # a replay: the same receipt
        sessions_found = self._subject_sessions(tenant, subject_id)
        key_ids = self._destroy(tenant, subject_id)
        counts = {"sessions": 0}
        for session_id in sorted(sessions_found):
            self._bar_session(tenant, session_id, receipt.receipt_id)
            counts["sessions"] += 1
        counts["memories"] = self._bar_memories(tenant, subject_id, receipt.receipt_id, ref)
        counts["checkpoint_threads"] = checkpoints_erase.bar_subject(
            self._redis,
            self._scripts,
            engine,
            self._keys,
            tenant,
            subject_id,
            receipt_id=receipt.receipt_id,
        )
        with redis_errors():
            self._redis.delete(*self._subject_index_keys(tenant, subject_id))
        counts["cache"] = self._cache.invalidate_tag(subject_cache_tag(tenant, subject_id))
        return self._queued(receipt, counts, key_ids)

    def tenant(self, tenant: str, *, request_id: str) -> Receipt:
        validate_id("tenant", tenant)
        validate_id("request_id", request_id)
        engine = self._engine()
        receipt, _created = receipts.open_receipt(
            engine, request_id=request_id, scope=TENANT, tenant=tenant, ref=None
        )
        if receipt.stage != receipts.REQUESTED:
            return receipt
        key_ids = self._destroy(tenant, None)
        counts = {"sessions": 0, "memories": 0, "cache": 0}
        found = self._tenant_sessions(tenant)
        for session_id in sorted(found):
            self._bar_session(tenant, session_id, receipt.receipt_id)
            counts["sessions"] += 1
        for subject_id in sorted(self._tenant_subjects(tenant)):
            ref = receipts.subject_ref(self._settings, tenant, subject_id)
            counts["memories"] += self._bar_memories(tenant, subject_id, receipt.receipt_id, ref)
            with redis_errors():
                self._redis.delete(*self._subject_index_keys(tenant, subject_id))
            counts["cache"] += self._cache.invalidate_tag(subject_cache_tag(tenant, subject_id))
        counts["cache"] += self._cache.invalidate_tag(tenant_cache_tag(tenant))
        counts["cache"] += erase_tenant_namespaces(self._redis, self._keys, tenant)
        counts["checkpoint_threads"] = checkpoints_erase.bar_tenant(
            self._redis, self._scripts, engine, self._keys, tenant, receipt_id=receipt.receipt_id
        )
        return self._queued(receipt, counts, key_ids)

    # --- the steps ----------------------------------------------------------------------------

    def _destroy(self, tenant: str, subject_id: str | None) -> list[str]:
        # First: once the keys are gone, whatever else survives for a moment is unreadable.
        return [] if self._destroy_keys is None else self._destroy_keys(tenant, subject_id)

    def _bar_session(self, tenant: str, session_id: str, receipt_id: str) -> None:
        """Redis cleared and the store's floors raised for one session."""
        clearer = SessionClearer(
            scripts=self._scripts, engine=self._engine(), settings=self._settings
        )
        clearer.bar(tenant, session_id, what=EVERYTHING, erased_by=receipt_id)

    def _bar_memories(self, tenant: str, subject_id: str, receipt_id: str, ref: str) -> int:
        """Tombstone and delete the subject's memories in the store, then drop its view and
        set the Redis tombstone in one call. Returns the memories tombstoned."""
        subject = self._keys.subject(tenant, subject_id)
        member = f"{tenant}/{subject_id}"
        with redis_errors():
            in_view = [
                name for name in self._redis.hkeys(subject.memories) if name not in ("~", "^")
            ]
            waiting = [
                memory_id
                for memory_id, owner in self._redis.hgetall(subject.pending_ids).items()
                if owner == member
            ]
        now = datetime.now(UTC)
        with translate_errors(), self._engine().begin() as connection:
            write_lock(connection)  # SQLite: no drainer writes between our read and delete
            if connection.dialect.name == "postgresql":
                # Exclusive: a drainer holding the subject's shared lock commits first (and
                # its rows are deleted below); one after us sees the tombstones.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": subject_lock_key(tenant, subject_id)},
                )
            stored = connection.execute(
                select(memories.c.memory_id).where(
                    (memories.c.tenant == tenant) & (memories.c.subject_id == subject_id)
                )
            ).scalars()
            ids = sorted({*_as_text(in_view), *_as_text(waiting), *stored})
            if ids:
                connection.execute(
                    insert_for(connection, memory_tombstones).on_conflict_do_nothing(
                        index_elements=["memory_id"]
                    ),
                    [
                        {
                            "memory_id": i,
                            "tenant": tenant,
                            "receipt_id": receipt_id,
                            "erased_at": now,
                        }
                        for i in ids
                    ],
                )
            connection.execute(
                delete(memory_lineage).where(
                    (memory_lineage.c.tenant == tenant)
                    & (memory_lineage.c.subject_id == subject_id)
                )
            )
            connection.execute(
                delete(memories).where(
                    (memories.c.tenant == tenant) & (memories.c.subject_id == subject_id)
                )
            )
        with redis_errors():
            self._scripts.subject_erase(
                keys=[
                    subject.memories,
                    subject.accessed,
                    subject.embeddings,
                    subject.lease,
                    self._keys.erasure_tombstone(subject.shard, ref),
                ],
                args=[receipt_id, TOMBSTONE_TTL_S, int(time.time() * 1000)],
            )
        return len(ids)

    def _queued(self, receipt: Receipt, counts: dict[str, int], key_ids: list[str]) -> Receipt:
        receipts.update_receipt(
            self._engine(),
            receipt.receipt_id,
            stage=QUEUED,
            counts={"barred": counts},
            key_ids=key_ids,
        )
        found = receipts.load(self._engine(), receipt.receipt_id)
        assert found is not None
        return found

    # --- finding what to erase: indexes only, never a SCAN ------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine()

    def sessions_of(self, tenant: str, subject_id: str) -> set[str]:
        """The subject's sessions: Redis's index (sessions not yet durable) and the store's."""
        return self._subject_sessions(tenant, subject_id)

    def _subject_index_keys(self, tenant: str, subject_id: str) -> list[str]:
        return [
            self._keys.subject_sessions(shard, tenant, subject_id)
            for shard in range(self._keys.shards)
        ]

    def _subject_sessions(self, tenant: str, subject_id: str) -> set[str]:
        found = self._members(self._subject_index_keys(tenant, subject_id))
        with translate_errors(), self._engine().connect() as connection:
            found |= set(
                connection.execute(
                    select(sessions.c.session_id).where(
                        (sessions.c.tenant == tenant) & (sessions.c.subject_id == subject_id)
                    )
                ).scalars()
            )
        return found

    def _tenant_sessions(self, tenant: str) -> set[str]:
        found = self._members(
            [self._keys.tenant_sessions(shard, tenant) for shard in range(self._keys.shards)]
        )
        with translate_errors(), self._engine().connect() as connection:
            found |= set(
                connection.execute(
                    select(sessions.c.session_id).where(sessions.c.tenant == tenant)
                ).scalars()
            )
        return found

    def _tenant_subjects(self, tenant: str) -> set[str]:
        """Subjects with memories: in the store, or still in a WAL (the pending ids)."""
        prefix = f"{tenant}/"
        found: set[str] = set()
        with redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            for key in self._keys.all_pending_memory_ids():
                pipe.hvals(key)
            for owners in pipe.execute():
                found |= {o[len(prefix) :] for o in _as_text(owners) if o.startswith(prefix)}
        with translate_errors(), self._engine().connect() as connection:
            found |= set(
                connection.execute(
                    select(memories.c.subject_id).where(memories.c.tenant == tenant).distinct()
                ).scalars()
            )
        return found

    def _members(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        with redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(key)
            for members in pipe.execute():
                found |= set(_as_text(members))
        return found


def _as_text(values: Iterable[str | bytes]) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in values]
