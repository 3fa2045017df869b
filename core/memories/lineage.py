"""Consolidation's durable side: the memories it may merge, the merge itself (one
transaction), the bookkeeping that makes a second pass a no-op, and the lineage it keeps.

A memory is live while ``superseded_by`` is NULL (and it has not expired). Consolidation never
reads a CRITICAL or pinned memory as a candidate, so it never writes one either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, or_, select, update

from core.crypto.cipher import memory_aad
from core.crypto.vault import content_digest, open_contents, sealing
from core.errors import PermanentError
from core.memories.model import Priority
from core.memories.similarity import content_hash, normalize
from core.store.db import memories, memory_lineage
from core.summaries.store import add_usage

__all__ = ["add_usage"]


class SupersededTwice(PermanentError):
    """A source was superseded since we read it (another worker merged it): roll back."""


@dataclass(frozen=True, slots=True)
class StoredMemory:
    """A memories row, as consolidation reads it."""

    memory_id: str
    tenant: str
    subject_id: str
    content: str
    content_hash: str
    priority: Priority
    pinned: bool
    tags: tuple[str, ...]
    embedding: list[float] | None
    embedding_model: str | None
    access_count: int
    last_accessed: datetime | None
    examined_at: datetime | None
    provenance: dict[str, Any] | None
    ttl_s: int | None
    created_at: datetime
    expires_at: datetime | None
    superseded_by: str | None = None

    @property
    def merged_from(self) -> tuple[str, ...]:
        found = (self.provenance or {}).get("memories") or ()
        return tuple(str(memory_id) for memory_id in found)


@dataclass(frozen=True, slots=True)
class MergedMemory:
    """What a merge writes: the new memory, its sources, and how it was made."""

    memory_id: str
    content: str
    method: str
    sources: tuple[StoredMemory, ...]
    created_at: datetime

    @property
    def priority(self) -> Priority:
        return max(source.priority for source in self.sources)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted({tag for source in self.sources for tag in source.tags}))

    @property
    def source_ids(self) -> tuple[str, ...]:
        return tuple(source.memory_id for source in self.sources)

    @property
    def provenance(self) -> dict[str, Any]:
        """The direct sources, and every session any of them (or their own sources) came
        from, each once, in source order."""
        sessions: list[dict[str, Any]] = []
        for source in self.sources:
            found = source.provenance or {}
            for session in found.get("sessions", [found] if "memories" not in found else []):
                if session and session not in sessions:
                    sessions.append(session)
        provenance: dict[str, Any] = {"memories": list(self.source_ids)}
        if sessions:
            provenance["sessions"] = sessions
        return provenance

    @property
    def ttl_s(self) -> int | None:
        own = [source.ttl_s for source in self.sources]
        return None if None in own else max(ttl for ttl in own if ttl is not None)

    @property
    def access_count(self) -> int:
        return sum(source.access_count for source in self.sources)

    @property
    def last_accessed(self) -> datetime | None:
        return max((s.last_accessed for s in self.sources if s.last_accessed), default=None)

    @property
    def expires_at(self) -> datetime | None:
        own = [source.expires_at for source in self.sources]
        return None if None in own else max(when for when in own if when is not None)


def from_rows(engine: Engine, rows: Sequence[Any]) -> list[StoredMemory]:
    """Memories rows, opened; one whose data key is destroyed reads as gone (skipped)."""
    contents = open_contents(
        engine,
        [
            (row.key_id, row.content, memory_aad(row.tenant, row.subject_id, row.memory_id))
            for row in rows
        ],
    )
    return [
        _from_row(row, content)
        for row, content in zip(rows, contents, strict=True)
        if content is not None
    ]


def _from_row(row: Any, content: str) -> StoredMemory:
    return StoredMemory(
        memory_id=row.memory_id,
        tenant=row.tenant,
        subject_id=row.subject_id,
        content=content,
        # Recomputed: the stored hash of a sealed memory is keyed (core/log/sealing.py), and
        # grouping exact duplicates needs the same hash for every row of the subject.
        content_hash=content_hash(content),
        priority=Priority(row.priority),
        pinned=bool(row.pinned),
        tags=tuple(row.tags or ()),
        embedding=row.embedding,
        embedding_model=row.embedding_model,
        access_count=int(row.access_count or 0),
        last_accessed=row.last_accessed,
        examined_at=row.examined_at,
        provenance=row.provenance,
        ttl_s=row.ttl_s,
        created_at=row.created_at,
        expires_at=row.expires_at,
        superseded_by=row.superseded_by,
    )


def _live(now: datetime) -> Any:
    return and_(
        memories.c.superseded_by.is_(None),
        or_(memories.c.expires_at.is_(None), memories.c.expires_at > now),
    )


def _eligible() -> Any:
    # CRITICAL and pinned memories are never candidates: consolidation never reads them as
    # such, so it can neither merge, rewrite, supersede nor expire one.
    return and_(memories.c.priority < int(Priority.CRITICAL), memories.c.pinned.is_(False))


def due_subjects(
    engine: Engine,
    *,
    tenant: str | None = None,
    subject_id: str | None = None,
    limit: int = 1000,
) -> list[tuple[str, str]]:
    """Subjects with at least one live, mergeable memory consolidation has not examined yet."""
    now = datetime.now(UTC)
    query = (
        select(memories.c.tenant, memories.c.subject_id)
        .where(_live(now), _eligible(), memories.c.examined_at.is_(None))
        .group_by(memories.c.tenant, memories.c.subject_id)
        .order_by(memories.c.tenant, memories.c.subject_id)
        .limit(limit)
    )
    if tenant is not None:
        query = query.where(memories.c.tenant == tenant)
    if subject_id is not None:
        query = query.where(memories.c.subject_id == subject_id)
    with engine.connect() as connection:
        return [(row.tenant, row.subject_id) for row in connection.execute(query)]


def candidates(engine: Engine, tenant: str, subject_id: str) -> list[StoredMemory]:
    """The subject's live memories consolidation may merge, oldest first."""
    now = datetime.now(UTC)
    query = (
        select(memories)
        .where(
            memories.c.tenant == tenant,
            memories.c.subject_id == subject_id,
            _live(now),
            _eligible(),
        )
        .order_by(memories.c.created_at, memories.c.memory_id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return from_rows(engine, rows)


def load(connection: Connection, memory_ids: Sequence[str]) -> list[StoredMemory]:
    rows = connection.execute(select(memories).where(memories.c.memory_id.in_(list(memory_ids))))
    return from_rows(connection.engine, rows.all())


def store_embeddings(engine: Engine, vectors: dict[str, list[float]], *, model: str) -> None:
    """Keep computed embeddings (only on rows still without one for this model)."""
    if not vectors:
        return
    with engine.begin() as connection:
        for memory_id, vector in vectors.items():
            connection.execute(
                update(memories)
                .where(memories.c.memory_id == memory_id)
                .values(embedding=vector, embedding_model=model)
            )


def _sealed(
    engine: Engine, merged: MergedMemory, tenant: str, subject_id: str
) -> tuple[str | None, str, str]:
    """(key_id, stored content, content hash) of a merged memory.

    The key is confirmed live, but the hold ends before the merge commits: a merge only
    recombines the subject's existing memories, so if an erasure destroys the key meanwhile,
    the merged row is old data and going with the key is what erasure wants.
    """
    vault = sealing(engine)
    if vault is None:
        return None, merged.content, content_hash(merged.content)
    with vault.sealer() as sealer:
        key = sealer.key(tenant, subject_id)
        aad = memory_aad(tenant, subject_id, merged.memory_id)
        key_id, content = sealer.seal(tenant, subject_id, merged.content, aad)
    return key_id, content, content_digest(key, normalize(merged.content))


def write_merge(connection: Connection, merged: MergedMemory) -> None:
    """The merged memory, its lineage, and its sources pointed at it, on ``connection``'s open
    transaction. Raises ``SupersededTwice`` when any source is no longer live."""
    now = merged.created_at
    tenant, subject_id = merged.sources[0].tenant, merged.sources[0].subject_id
    key_id, content, digest = _sealed(connection.engine, merged, tenant, subject_id)
    connection.execute(
        memories.insert().values(
            memory_id=merged.memory_id,
            tenant=tenant,
            subject_id=subject_id,
            content=content,
            content_hash=digest,
            key_id=key_id,
            priority=int(merged.priority),
            pinned=False,
            tags=list(merged.tags),
            access_count=merged.access_count,
            last_accessed=merged.last_accessed,
            examined_at=now,
            provenance=merged.provenance,
            ttl_s=merged.ttl_s,
            created_at=now,
            updated_at=now,
            expires_at=merged.expires_at,
        )
    )
    connection.execute(
        memory_lineage.insert(),
        [
            {
                "merged_id": merged.memory_id,
                "source_id": source.memory_id,
                "tenant": source.tenant,
                "subject_id": source.subject_id,
                "method": merged.method,
                "created_at": now,
            }
            for source in merged.sources
        ],
    )
    # The guarded UPDATE: a source another worker (or an earlier, lease-less run) already
    # superseded is not matched, the count falls short and the whole merge rolls back, so no
    # memory is ever superseded twice. Nothing else in the sources' rows changes but
    # examined_at (consolidation's own bookkeeping), so unconsolidate restores them exactly.
    hit = connection.execute(
        update(memories)
        .where(
            memories.c.memory_id.in_(list(merged.source_ids)),
            memories.c.superseded_by.is_(None),
        )
        .values(superseded_by=merged.memory_id, examined_at=now)
    ).rowcount
    if hit != len(merged.sources):
        raise SupersededTwice(
            f"{len(merged.sources) - hit} of {len(merged.sources)} sources of "
            f"{merged.memory_id} were already superseded"
        )


def mark_examined(connection: Connection, memory_ids: Sequence[str], *, now: datetime) -> int:
    """Note that consolidation looked at these (still live) memories."""
    if not memory_ids:
        return 0
    result = connection.execute(
        update(memories)
        .where(
            memories.c.memory_id.in_(list(memory_ids)),
            memories.c.superseded_by.is_(None),
            memories.c.examined_at.is_(None),
            _eligible(),
        )
        .values(examined_at=now)
    )
    return int(result.rowcount)
