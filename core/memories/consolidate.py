"""Consolidation: fold a subject's duplicate and near-duplicate memories into merged ones.

One subject at a time, under its lease (``SubjectKeys.lease``):

1. Warm the view if it is cold, read its ``"^"`` (the newest change's WAL id) and go on only
   when that entry is durable, so the durable store holds every change the view shows.
2. Read the subject's live memories, CRITICAL and pinned ones excluded (never candidates).
3. Group exact duplicates (same ``content_hash``); cluster the groups by similarity
   (embeddings when configured, else lexical); keep only clusters with a memory not examined.
4. Per cluster: an exact group folds without any LLM call; a near-duplicate cluster goes to
   the merger (LLM or local) and the guard. Then, in ONE transaction: the merged memory, its
   lineage rows, the sources pointed at it (guarded: every source still live, or roll back),
   the LLM usage. Before COMMIT the view's compare-and-set runs (``"^"`` unchanged, every
   source as read); refused, the transaction rolls back. A failed COMMIT undoes the view.
5. Mark every live memory looked at as examined, so the next pass over the same set is a no-op.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import redis
from sqlalchemy import Connection, Engine

from config.settings import Settings
from core.crypto.vault import vault_for
from core.errors import PermanentError, TransientError
from core.memories import lineage, records
from core.memories.embeddings import Embedder, cosine, embedder_from_settings
from core.memories.lineage import MergedMemory, StoredMemory, SupersededTwice
from core.memories.merge import Merger, MergeText, guard, merger_from_settings
from core.memories.report import ConsolidationReport
from core.memories.similarity import clusters, lexical_similarity
from core.memories.view import warm
from core.memories.view_merge import (
    ViewScripts,
    is_durable,
    newest_change,
)
from core.models import new_message_id
from core.store.db_errors import translate_errors
from core.store.keys import Keys, SubjectKeys
from core.store.lease import Lease
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts
from core.summaries.budget import Budgets

log = logging.getLogger(__name__)

# The embedder argument's default: the one the settings name (None when they name none).
FROM_SETTINGS: Literal["settings"] = "settings"


@dataclass(frozen=True, slots=True)
class Cluster:
    members: tuple[StoredMemory, ...]  # every source, exact duplicates included
    texts: tuple[str, ...]  # one text per distinct content (what a merger reads)
    exact: bool


class Consolidator:
    """Consolidation with these clients. ``merger`` and ``embedder`` default to the settings'
    (``MEMSCRIBE_MEMORY_MERGER``, ``MEMSCRIBE_EMBEDDINGS``)."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        engine: Engine,
        settings: Settings,
        merger: Merger | None = None,
        embedder: Embedder | Literal["settings"] | None = FROM_SETTINGS,
    ) -> None:
        self.redis = redis
        self.engine = engine
        vault_for(engine, settings)  # merges seal, candidates open (core/crypto)
        self.settings = settings
        self.keys = Keys.of(settings)
        self.merger = merger or merger_from_settings(settings)
        self.embedder: Embedder | None = (
            embedder_from_settings(settings) if isinstance(embedder, str) else embedder
        )
        self.scripts = ViewScripts.register(redis)
        self.store_scripts = Scripts.register(redis)
        self.budgets = Budgets(redis, self.keys, settings)
        self._fresh_vectors: dict[str, list[float]] = {}

    # --- passes ------------------------------------------------------------------------------

    def consolidate_due(
        self,
        *,
        tenant: str | None = None,
        subject_id: str | None = None,
        limit: int = 1000,
        on_subject: Callable[[int, int], None] | None = None,
    ) -> ConsolidationReport:
        """Every due subject (or the ones named), one after the other. Transient and permanent
        failures are counted per subject (``skipped``) and the pass goes on."""
        report = ConsolidationReport()
        due = lineage.due_subjects(self.engine, tenant=tenant, subject_id=subject_id, limit=limit)
        for index, (subject_tenant, subject) in enumerate(due, start=1):
            try:
                report.add(self.consolidate_subject(subject_tenant, subject))
            except TransientError as exc:
                report.skipped["unavailable"] += 1
                log.warning("consolidate %s/%s: %s", subject_tenant, subject, exc)
            except PermanentError as exc:
                report.skipped["failed"] += 1
                log.error("consolidate %s/%s failed: %s", subject_tenant, subject, exc)
            if on_subject is not None:
                on_subject(index, len(due))
        return report

    def consolidate_subject(self, tenant: str, subject_id: str) -> ConsolidationReport:
        """One pass over one subject. Raises ``TransientError`` (LLM or store unavailable)
        after keeping the merges already made; the next pass picks up the rest."""
        report = ConsolidationReport()
        keys = self.keys.subject(tenant, subject_id)
        lease = Lease(
            self.redis,
            self.scripts.lease,
            keys.lease,
            int(self.settings.consolidate_lease_s * 1000),
        )
        with redis_errors():
            if not lease.acquire():
                report.skipped["busy"] += 1
                return report
        try:
            with redis_errors():
                complete, newest = newest_change(self.redis, keys)
                if not complete:
                    warm(
                        self.redis,
                        self.store_scripts,
                        self.engine,
                        keys,
                        ttl_s=self.settings.memory_cache_ttl_s,
                    )
                    complete, newest = newest_change(self.redis, keys)
                if not is_durable(self.redis, keys, newest):
                    report.skipped["waiting"] += 1
                    return report
            # "^" was read above, before the durable store: if a change lands after this
            # read, "^" moves and every compare-and-set below refuses.
            with translate_errors():
                stored = lineage.candidates(self.engine, tenant, subject_id)
            report.subjects += 1
            keep_open: set[str] = set()
            planned = self.plan(stored)
            self._cache_vectors(keys)
            for cluster in planned:
                with redis_errors():
                    if not lease.renew():
                        report.skipped["lease_lost"] += 1
                        return report
                if not self._merge(keys, newest, cluster, report):
                    keep_open.update(member.memory_id for member in cluster.members)
            looked_at = [m.memory_id for m in stored if m.memory_id not in keep_open]
            with translate_errors(), self.engine.begin() as connection:
                lineage.mark_examined(connection, looked_at, now=datetime.now(UTC))
            return report
        finally:
            try:
                lease.release()
            except redis.RedisError as exc:
                log.warning("could not release %s (it expires): %s", keys.lease, exc)

    # --- planning ----------------------------------------------------------------------------

    def plan(self, stored: Sequence[StoredMemory]) -> list[Cluster]:
        """The clusters worth a merge: exact duplicates, and near-duplicate groups, each with
        at least one memory no pass has examined yet."""
        groups: dict[str, list[StoredMemory]] = {}
        for memory in stored:
            groups.setdefault(memory.content_hash, []).append(memory)
        ordered = list(groups.values())
        representatives = [group[0] for group in ordered]
        score = self._scorer(representatives)
        near = clusters(len(ordered), score, self._threshold()) if len(ordered) > 1 else []
        found: list[Cluster] = []
        grouped: set[int] = set()
        for indices in near:
            grouped.update(indices)
            members = tuple(m for i in indices for m in ordered[i])
            texts = tuple(ordered[i][0].content for i in indices)
            found.append(Cluster(members, texts, exact=False))
        for index, group in enumerate(ordered):
            if index not in grouped and len(group) > 1:
                found.append(Cluster(tuple(group), (group[0].content,), exact=True))
        return [c for c in found if any(m.examined_at is None for m in c.members)]

    def _cache_vectors(self, keys: SubjectKeys) -> None:
        """Embeddings just computed, also in the subject's view: recall ranks by them."""
        fresh, self._fresh_vectors = self._fresh_vectors, {}
        if not fresh:
            return
        with redis_errors(), self.redis.pipeline(transaction=False) as pipe:
            for memory_id, vector in fresh.items():
                pipe.hset(keys.embeddings, memory_id, json.dumps(vector, separators=(",", ":")))
            pipe.expire(keys.embeddings, self.settings.memory_cache_ttl_s)
            pipe.execute()

    def _threshold(self) -> float:
        if self.embedder is not None:
            return self.settings.memory_embedding_threshold
        return self.settings.memory_lexical_threshold

    def _scorer(self, memories: Sequence[StoredMemory]) -> Callable[[int, int], float]:
        if self.embedder is None:
            return lambda i, j: lexical_similarity(memories[i].content, memories[j].content)
        name = self.embedder.name
        vectors = {
            m.memory_id: m.embedding
            for m in memories
            if m.embedding is not None and m.embedding_model == name
        }
        missing = [m for m in memories if m.memory_id not in vectors]
        if missing:
            computed = self.embedder.embed([m.content for m in missing])
            fresh = {m.memory_id: v for m, v in zip(missing, computed, strict=True)}
            with translate_errors():
                lineage.store_embeddings(self.engine, fresh, model=name)
            vectors.update(fresh)
            self._fresh_vectors.update(fresh)
        return lambda i, j: cosine(vectors[memories[i].memory_id], vectors[memories[j].memory_id])

    # --- one cluster -------------------------------------------------------------------------

    def _merge(
        self, keys: SubjectKeys, newest: str, cluster: Cluster, report: ConsolidationReport
    ) -> bool:
        """Merge one cluster. False: leave its memories unexamined (retry on a later pass)."""
        report.clusters += 1
        tenant = keys.tenant
        paid = not cluster.exact and self.merger.paid
        if cluster.exact:
            result, method = MergeText(cluster.members[0].content), "exact"
        else:
            if paid and self.budgets.usage(tenant).exhausted:
                report.skipped["budget"] += 1
                return False
            result, method = self.merger.merge(cluster.texts), self.merger.method
            if paid:
                self._charge(tenant, result, report)
        now = datetime.now(UTC)
        reason = None if cluster.exact else guard(cluster.texts, result.text, self.settings)
        if reason is not None:
            # Refused: the sources stay as they are, examined, so the next pass does not pay
            # for the same answer again (a new memory joining them reopens the cluster).
            report.refused[reason] += 1
            with translate_errors(), self.engine.begin() as connection:
                lineage.mark_examined(connection, [m.memory_id for m in cluster.members], now=now)
                if paid:
                    self._usage_row(connection, tenant, result, now)
            return True
        merged = MergedMemory(
            memory_id=new_message_id(),
            content=result.text,
            method=method,
            sources=cluster.members,
            created_at=now,
        )
        outcome = self._commit(keys, newest, merged, result if paid else None)
        if outcome != "merged":
            report.skipped[outcome] += 1
            return False
        report.merged += 1
        report.exact += cluster.exact
        report.superseded += len(cluster.members)
        return True

    def _commit(
        self, keys: SubjectKeys, newest: str, merged: MergedMemory, paid: MergeText | None
    ) -> str:
        tenant = keys.tenant
        expected = self._expected_values(keys, merged.sources)
        if expected is None:
            self._usage_alone(tenant, paid, merged.created_at)
            return "changed"
        with translate_errors(), self.engine.connect() as connection:
            transaction = connection.begin()
            try:
                lineage.write_merge(connection, merged)
            except SupersededTwice as exc:
                transaction.rollback()
                log.warning("merge rolled back: %s", exc)
                self._usage_alone(tenant, paid, merged.created_at)
                return "superseded"
            if paid is not None:
                self._usage_row(connection, tenant, paid, merged.created_at)
            try:
                with redis_errors():
                    done = self.scripts.merge(keys, newest=newest, merged=merged, expected=expected)
            except BaseException:
                transaction.rollback()
                raise
            if done != 1:
                # A change arrived since "^" was read (or the view went cold): the durable
                # store may not hold it yet, so this merge is not safe. Try again next pass.
                transaction.rollback()
                self._usage_alone(tenant, paid, merged.created_at)
                return "changed"
            try:
                transaction.commit()
            except BaseException:
                # The view shows a merge the store does not have: put the view back.
                self.scripts.unmerge(
                    keys,
                    merged_id=merged.memory_id,
                    require_live=False,
                    becomes="",
                    sources=merged.sources,
                )
                raise
        return "merged"

    def _expected_values(
        self, keys: SubjectKeys, sources: Sequence[StoredMemory]
    ) -> list[tuple[str, str]] | None:
        """Each source's live view value, or None when one is not live as the store says."""
        with redis_errors():
            values = self.redis.hmget(keys.memories, [s.memory_id for s in sources])
        expected = []
        for source, value in zip(sources, values, strict=True):
            entry = records.parse_live(source.memory_id, str(value)) if value else None
            if entry is None or (entry.priority, entry.pinned) != (source.priority, source.pinned):
                return None
            expected.append((source.memory_id, entry.value))
        return expected

    # --- usage -------------------------------------------------------------------------------

    def _charge(self, tenant: str, result: MergeText, report: ConsolidationReport) -> None:
        report.llm_calls += 1
        report.prompt_tokens += result.prompt_tokens
        report.completion_tokens += result.completion_tokens
        with redis_errors():
            self.budgets.record(
                tenant,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                now_s=time.time(),
            )

    def _usage_row(
        self, connection: Connection, tenant: str, result: MergeText, now: datetime
    ) -> None:
        lineage.add_usage(
            connection,
            tenant=tenant,
            model=f"merge:{self.merger.method}",
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            now=now,
        )

    def _usage_alone(self, tenant: str, paid: MergeText | None, now: datetime) -> None:
        # The tokens were spent even though the merge was rolled back.
        if paid is None:
            return
        with translate_errors(), self.engine.begin() as connection:
            self._usage_row(connection, tenant, paid, now)
