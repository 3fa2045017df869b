"""Long-term memories on a Redis Cluster: every script stays in one slot (a subject's view,
its shard's WAL and index), forget finds memories on any master, context(memories=k) reads
the subject's slot with calls of its own."""

from __future__ import annotations

import sqlalchemy as sa

from core.client import MemoryClient
from core.store.db import make_engine
from tests.cluster.conftest import (
    assert_no_cross_slot,
    nodes_holding,
    primaries,
)
from tests.cluster.test_cluster_stores import drainer_for
from tests.helpers.private_cluster import PrivateCluster


def test_memories_on_every_master(
    cluster_client: MemoryClient, cluster: PrivateCluster, pg_database: str
) -> None:
    client = cluster_client
    subjects = [f"user-{i}" for i in range(24)]
    views = [client.keys.subject("default", s).memories for s in subjects]
    assert nodes_holding(client.redis, views) == primaries(client.redis)
    remembered = {
        client.remember(subject, f"{subject} likes tea number {n}", tags=["tea"]): subject
        for subject in subjects
        for n in range(3)
    }
    for subject in subjects:
        assert len(client.recall(subject, query="tea")) == 3  # before any drain
        client.append(f"chat-{subject}", "user", "tea?", subject_id=subject)
        assert len(client.context(f"chat-{subject}", memories=2).memories) == 2
    gone = [memory_id for memory_id, subject in remembered.items() if subject == "user-5"]
    assert client.forget(gone[0]) is True  # still in the WAL: the shard index finds it
    assert drainer_for(client).flush(timeout_s=60) == 0
    assert client.forget(gone[1]) is True  # durable: the store finds it
    assert client.pin(gone[2]) is True
    assert drainer_for(client).flush(timeout_s=60) == 0

    engine = make_engine(pg_database)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT memory_id, pinned FROM memories")).all()
    engine.dispose()
    assert {row.memory_id for row in rows} == set(remembered) - set(gone[:2])
    assert {row.memory_id for row in rows if row.pinned} == {gone[2]}
    # The view is forgotten on every master: recall reads the store, on the right node.
    client.redis.delete(*views)
    assert len(client.recall("user-7")) == 3 and len(client.recall("user-5")) == 1
    assert_no_cross_slot(cluster)


def test_consolidation_on_every_master(
    cluster_client: MemoryClient, cluster: PrivateCluster, pg_database: str
) -> None:
    """The consolidation's scripts (durability check, view compare-and-set) run on the master
    of each subject's slot: exact and near duplicates fold on all three, recall follows."""
    from core.memories.consolidate import Consolidator

    client = cluster_client
    subjects = [f"user-{i}" for i in range(24)]
    for subject in subjects:
        client.remember(subject, "The user lives in Berlin and works as a nurse.")
        client.remember(subject, "The user lives in Berlin and works as a night nurse.")
        client.remember(subject, "Owns a red bicycle.")
        client.remember(subject, "owns a  RED bicycle")
        client.remember(subject, "Allergic to peanuts.", priority="CRITICAL")
    assert drainer_for(client).flush(timeout_s=60) == 0
    consolidator = Consolidator(
        redis=client.redis,
        engine=client.engine,
        settings=client.settings.model_copy(update={"memory_merger": "local"}),
    )
    report = consolidator.consolidate_due()
    assert (report.subjects, report.merged, report.exact) == (24, 48, 24)
    for subject in subjects:
        live = client.recall(subject, k=10)
        assert len(live) == 3
        assert sum(1 for m in live if m.merged_from) == 2
        assert any(m.priority == "CRITICAL" and not m.merged_from for m in live)
    assert consolidator.consolidate_due().merged == 0  # a second pass changes nothing
    assert_no_cross_slot(cluster)
