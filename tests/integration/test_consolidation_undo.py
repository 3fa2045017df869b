"""Consolidation end to end through remember, the drainer and recall; unconsolidate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from config.settings import Settings
from core.client import MemoryClient
from core.errors import ValidationError
from core.log.drainer import Drainer
from core.memories import records
from core.memories.consolidate import Consolidator
from core.store.db import memory_lineage
from tests.conftest import SettingsFactory
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.memories import merge_reply, rows

NEAR = [
    "Alice lives in Lisbon and works as a nurse.",
    "Alice lives in Lisbon and works as a night nurse.",
]


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=merge_reply) as server:
        yield server


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str, fake_llm: FakeOpenAI) -> Settings:
    return make_settings(
        database_url=database_url, openai_api_key="test-key", openai_base_url=fake_llm.url
    )


def consolidate(client: MemoryClient) -> Consolidator:
    return Consolidator(redis=client.redis, engine=client.engine, settings=client.settings)


def test_merged_memories_replace_their_sources_in_recall(
    client: MemoryClient, drainer: Drainer
) -> None:
    """After a pass, recall shows the merged memory (with merged_from), not its sources."""
    sources = [client.remember("alice", text, tags=[f"t{i}"]) for i, text in enumerate(NEAR)]
    other = client.remember("alice", "Alice is allergic to peanuts.", priority="CRITICAL")
    drainer.drain_all()
    report = consolidate(client).consolidate_due()
    assert report.merged == 1
    recalled = {memory.memory_id: memory for memory in client.recall("alice", k=10)}
    assert other in recalled and not set(sources) & set(recalled)
    (merged,) = [m for m in recalled.values() if m.merged_from]
    assert merged.merged_from == tuple(sources) and merged.tags == ("t0", "t1")
    assert merged.content == " ".join(NEAR)


def test_unconsolidate_restores_the_sources_exactly(client: MemoryClient, drainer: Drainer) -> None:
    """Rows as before (but examined_at), the view values as before, recall shows them."""
    sources = [client.remember("alice", text) for text in NEAR]
    sources += [client.remember("alice", "Likes jazz."), client.remember("alice", "likes JAZZ")]
    drainer.drain_all()
    view_key = client.keys.subject("default", "alice").memories
    before_rows = rows(client.engine)
    before_view = client.redis.hgetall(view_key)
    report = consolidate(client).consolidate_due()
    assert (report.merged, report.exact) == (2, 1)
    merged_ids = {rows(client.engine)[s]["superseded_by"] for s in sources}
    assert len(merged_ids) == 2
    for merged_id in merged_ids:
        undone = client.unconsolidate(merged_id)
        assert undone.memory_id == merged_id
    after_rows = rows(client.engine)
    assert set(after_rows) == set(before_rows)
    for memory_id, row in before_rows.items():
        assert after_rows[memory_id]["examined_at"] is not None  # not merged straight back
        assert {**after_rows[memory_id], "examined_at": None} == row
    with client.engine.connect() as connection:
        assert not connection.execute(sa.select(memory_lineage)).all()
    view = client.redis.hgetall(view_key)
    for memory_id in sources:
        assert view[memory_id] == before_view[memory_id]
    assert all(view[merged_id] == records.FORGOTTEN for merged_id in merged_ids)
    assert {m.memory_id for m in client.recall("alice", k=10)} == set(sources)
    again = consolidate(client).consolidate_due()
    assert (again.subjects, again.merged) == (0, 0)  # the undone merge is not redone


def test_unconsolidate_refuses_what_it_cannot_undo(client: MemoryClient, drainer: Drainer) -> None:
    """Not a merged memory, unknown, or folded again by a later merge: a clear error."""
    sources = [client.remember("alice", text) for text in NEAR]
    plain = client.remember("alice", "Alice collects stamps.")
    drainer.drain_all()
    consolidate(client).consolidate_due()
    first = rows(client.engine)[sources[0]]["superseded_by"]
    newer = client.remember("alice", "Alice lives in Lisbon and works as a nurse at night.")
    drainer.drain_all()
    assert consolidate(client).consolidate_due().merged == 1
    second = rows(client.engine)[first]["superseded_by"]
    assert second and rows(client.engine)[newer]["superseded_by"] == second
    with pytest.raises(ValidationError, match=r"unconsolidate .* first"):
        client.unconsolidate(first)
    with pytest.raises(ValidationError, match="not a merged memory"):
        client.unconsolidate(plain)
    with pytest.raises(ValidationError, match="no memory"):
        client.unconsolidate("no-such-memory")
    client.unconsolidate(second)
    client.unconsolidate(first)
    assert {m.memory_id for m in client.recall("alice", k=10)} == {*sources, newer, plain}


def test_consolidation_embeds_memories_and_recall_ranks_by_them(
    make_settings: SettingsFactory, database_url: str, fake_llm: FakeOpenAI, redis_client: object
) -> None:
    """MEMSCRIBE_EMBEDDINGS=openai (the fake server's /v1/embeddings): a pass embeds every
    memory it clusters, keeps the vectors in the store and the view, and exact duplicates
    still fold without the LLM. (The fake's vectors are hashes: this proves the plumbing.)"""
    settings = make_settings(
        database_url=database_url,
        openai_api_key="test-key",
        openai_base_url=fake_llm.url,
        embeddings="openai",
    )
    client = MemoryClient(redis=redis_client, settings=settings)  # type: ignore[arg-type]
    drainer = Drainer(redis=client.redis, engine=client.engine, settings=settings)
    ids = [client.remember("alice", text) for text in ("Likes tea.", "likes  TEA", "Owns a boat")]
    drainer.drain_all()
    report = consolidate(client).consolidate_due()
    assert report.merged == 1 and report.llm_calls == 0  # the exact pair, no chat completion
    assert len(fake_llm.requests("/v1/embeddings")) == 1  # one batch for the subject
    stored = rows(client.engine)
    embedded = {memory_id for memory_id, row in stored.items() if row["embedding"] is not None}
    assert {ids[0], ids[2]} <= embedded  # the representatives of both groups
    assert {row["embedding_model"] for row in stored.values() if row["embedding"]} == {
        f"openai:{settings.embedding_model}"
    }
    keys = client.keys.subject("default", "alice")
    assert set(client.redis.hkeys(keys.embeddings)) >= {ids[2]}
    assert client.recall("alice", query="Owns a boat")[0].memory_id == ids[2]
    client.close()
