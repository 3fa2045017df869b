"""Consolidation on real Redis and PostgreSQL, the LLM a local OpenAI-compatible server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from config.settings import Settings
from core.memories import records
from core.memories.consolidate import Consolidator
from core.memories.merge import LocalMerger
from core.store.db import llm_usage, make_engine
from core.store.keys import Keys
from core.summaries.budget import Budgets
from tests.conftest import SettingsFactory
from tests.fakes.openai_server import Answer, FakeOpenAI
from tests.helpers.memories import Seed, lineage_rows, merge_reply, rows, seed, truncate_memories

TENANT = "acme"


@pytest.fixture
def engine(pg_database: str) -> Iterator[sa.Engine]:
    engine = make_engine(pg_database)
    truncate_memories(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(reply=merge_reply) as server:
        yield server


@pytest.fixture
def llm_settings(make_settings: SettingsFactory, fake_llm: FakeOpenAI) -> Settings:
    return make_settings(
        openai_api_key="test-key", openai_base_url=fake_llm.url, memory_merger="auto"
    )


def consolidator(client: redis.Redis, engine: sa.Engine, settings: Settings) -> Consolidator:
    return Consolidator(redis=client, engine=engine, settings=settings)


NEAR = [
    "The user lives in Berlin and works as a nurse.",
    "The user lives in Berlin and works as a night nurse.",
]


def test_exact_duplicates_fold_without_an_llm_call(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings, fake_llm: FakeOpenAI
) -> None:
    """Same normalized text: one merged memory, method "exact", no LLM request at all."""
    ids = seed(
        engine,
        TENANT,
        "u1",
        [
            Seed("Prefers tea over coffee.", priority=1, tags=["drinks"]),
            Seed("  prefers TEA over coffee ", priority=3, tags=["prefs"]),
            Seed("Prefers tea over coffee!", provenance={"session_id": "chat-1"}),
            Seed("Has two cats named Miso and Tofu."),
        ],
    )
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert (report.merged, report.exact, report.superseded, report.llm_calls) == (1, 1, 3, 0)
    assert fake_llm.requests() == []
    stored = rows(engine)
    merged_id = stored[ids[0]]["superseded_by"]
    assert merged_id and {stored[i]["superseded_by"] for i in ids[:3]} == {merged_id}
    merged = stored[merged_id]
    assert merged["content"] == "Prefers tea over coffee."  # the oldest source, verbatim
    assert merged["priority"] == 3 and merged["tags"] == ["drinks", "prefs"]
    assert merged["provenance"] == {"memories": ids[:3], "sessions": [{"session_id": "chat-1"}]}
    assert stored[ids[3]]["superseded_by"] is None
    assert {(r["source_id"], r["method"]) for r in lineage_rows(engine)} == {
        (i, "exact") for i in ids[:3]
    }


def test_near_duplicates_merge_through_the_llm_and_charge_the_budget(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings, fake_llm: FakeOpenAI
) -> None:
    """One LLM call per cluster; tokens in llm_usage and in Redis; the view follows."""
    ids = seed(engine, TENANT, "u1", [Seed(text) for text in NEAR] + [Seed("Allergic to nuts.")])
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert (report.merged, report.llm_calls, report.superseded) == (1, 1, 2)
    assert len(fake_llm.requests()) == 1
    stored = rows(engine)
    merged_id = stored[ids[0]]["superseded_by"]
    assert stored[merged_id]["content"] == " ".join(NEAR)
    assert stored[merged_id]["examined_at"] is not None
    assert {r["method"] for r in lineage_rows(engine)} == {"llm:gpt-4o-mini"}
    usage = Budgets(redis_client, Keys.of(llm_settings), llm_settings).usage(TENANT)
    assert usage.calls == 1 and usage.spent == report.tokens > 0
    with engine.connect() as connection:
        row = connection.execute(sa.select(llm_usage)).one()
    assert (row.tenant, row.calls, row.prompt_tokens + row.completion_tokens) == (
        TENANT,
        1,
        report.tokens,
    )
    view = redis_client.hgetall(Keys.of(llm_settings).subject(TENANT, "u1").memories)
    live = records.parse_live(merged_id, view[merged_id])
    assert live is not None and live.record["mf"] == ids[:2] and live.record["c"] == " ".join(NEAR)
    for source in ids[:2]:
        assert view[source].startswith(f">{merged_id}|")
        assert records.parse_live(source, view[source].split("|", 1)[1]) is not None
    assert records.parse_live(ids[2], view[ids[2]]) is not None


def test_critical_and_pinned_memories_are_never_merged(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings, fake_llm: FakeOpenAI
) -> None:
    """Duplicates of a CRITICAL or pinned memory stay exactly as they were."""
    ids = seed(
        engine,
        TENANT,
        "u1",
        [
            Seed("Blood type is O negative.", priority=4),
            Seed("Blood type is O negative.", priority=4),
            Seed("Blood type is O negative.", priority=2),
            Seed(NEAR[0], pinned=True),
            Seed(NEAR[1], pinned=True),
        ],
    )
    before = rows(engine)
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    after = rows(engine)
    assert report.merged == 0 and fake_llm.requests() == []
    for memory_id in (ids[0], ids[1], ids[3], ids[4]):
        assert after[memory_id] == before[memory_id]
    assert after[ids[2]]["superseded_by"] is None


def test_a_second_pass_is_a_no_op(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings, fake_llm: FakeOpenAI
) -> None:
    """Running again over the same memories changes nothing and calls no LLM."""
    seed(engine, TENANT, "u1", [Seed(t) for t in NEAR] + [Seed("x y z"), Seed("x y z")])
    first = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert first.merged == 2
    before = rows(engine)
    view_before = redis_client.hgetall(Keys.of(llm_settings).subject(TENANT, "u1").memories)
    second = consolidator(redis_client, engine, llm_settings).consolidate_subject(TENANT, "u1")
    assert (second.clusters, second.merged, second.llm_calls) == (0, 0, 0)
    assert rows(engine) == before
    assert redis_client.hgetall(Keys.of(llm_settings).subject(TENANT, "u1").memories) == (
        view_before
    )
    assert len(fake_llm.requests()) == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("nurse", "too_short"),
        ("The user lives in Berlin and works as a nurse. " * 20, "too_long"),
        ("Someone lives somewhere and has some job, roughly speaking, ok.", "dropped_words"),
        ("The user lives in Berlin \x00 and works as a night nurse.", "invalid"),
        # The LLM's own verdict: look-alike facts, not one fact in other words.
        ("DISTINCT", "distinct"),
        ("distinct.", "distinct"),
    ],
)
def test_the_guard_refuses_a_merge_that_loses_content(
    redis_client: redis.Redis,
    engine: sa.Engine,
    llm_settings: Settings,
    fake_llm: FakeOpenAI,
    answer: str,
    reason: str,
) -> None:
    """A refused merge is counted by reason; the sources stay, examined; no second call."""
    ids = seed(engine, TENANT, "u1", [Seed(text) for text in NEAR])
    fake_llm.script(Answer(text=answer))
    before = rows(engine)
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert report.refused == {reason: 1} and report.merged == 0 and report.llm_calls == 1
    after = rows(engine)
    assert set(after) == set(ids) and lineage_rows(engine) == []
    for memory_id in ids:
        assert after[memory_id]["examined_at"] is not None
        assert {**after[memory_id], "examined_at": None} == before[memory_id]
    again = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert again.llm_calls == 0 and len(fake_llm.requests()) == 1
    with engine.connect() as connection:
        assert connection.execute(sa.select(llm_usage.c.calls)).scalar_one() == 1


def test_a_spent_budget_skips_llm_merges_but_not_exact_ones(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings, fake_llm: FakeOpenAI
) -> None:
    """An exhausted tenant budget: no LLM call (counted "budget"), retried later."""
    seed(engine, TENANT, "u1", [Seed(t) for t in NEAR] + [Seed("x y z"), Seed("X Y Z.")])
    budgets = Budgets(redis_client, Keys.of(llm_settings), llm_settings)
    budgets.set_budget(TENANT, 10)
    budgets.record(TENANT, prompt_tokens=10, completion_tokens=0, now_s=time.time())
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert report.skipped["budget"] == 1 and (report.merged, report.exact) == (1, 1)
    assert fake_llm.requests() == []
    budgets.set_budget(TENANT, 0)
    later = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert (later.merged, later.llm_calls) == (1, 1)


def test_the_local_merger_needs_no_llm(
    redis_client: redis.Redis, engine: sa.Engine, make_settings: SettingsFactory
) -> None:
    """Without an API key ("auto"), near-duplicates merge locally, method "local"."""
    settings = make_settings()
    ids = seed(engine, TENANT, "u1", [Seed(text) for text in NEAR])
    engine_consolidator = consolidator(redis_client, engine, settings)
    assert isinstance(engine_consolidator.merger, LocalMerger)
    report = engine_consolidator.consolidate_due()
    assert (report.merged, report.llm_calls) == (1, 0)
    merged_id = rows(engine)[ids[0]]["superseded_by"]
    assert rows(engine)[merged_id]["content"] == NEAR[1] + " " + NEAR[0]
    assert {r["method"] for r in lineage_rows(engine)} == {"local"}


def test_a_change_during_the_llm_call_rolls_the_merge_back(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings, fake_llm: FakeOpenAI
) -> None:
    """A remember that lands while the LLM answers moves "^": the view's compare-and-set
    refuses, the transaction rolls back, the next pass merges."""
    ids = seed(engine, TENANT, "u1", [Seed(text) for text in NEAR])
    keys = Keys.of(llm_settings).subject(TENANT, "u1")

    def racing_reply(body: dict[str, Any]) -> str:
        # A change (say, a remember of another memory) that the drainers made durable at once.
        entry = redis_client.xadd(keys.wal, {"d": "{}"})
        redis_client.xgroup_create(keys.wal, "persist", id="0")
        redis_client.xreadgroup("persist", "test", {keys.wal: ">"})
        redis_client.xack(keys.wal, "persist", entry)
        redis_client.hset(keys.memories, records.NEWEST_CHANGE, entry)
        return merge_reply(body)

    fake_llm.reply = racing_reply
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert report.skipped["changed"] == 1 and report.merged == 0
    assert set(rows(engine)) == set(ids) and lineage_rows(engine) == []
    assert all(row["examined_at"] is None for row in rows(engine).values())
    with engine.connect() as connection:  # the tokens were spent all the same
        assert connection.execute(sa.select(llm_usage.c.calls)).scalar_one() == 1
    fake_llm.reply = merge_reply
    assert consolidator(redis_client, engine, llm_settings).consolidate_due().merged == 1


def test_a_subject_whose_newest_change_is_not_durable_waits(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings
) -> None:
    """ "^" names a WAL entry the drainers have not acknowledged: skip the subject."""
    seed(engine, TENANT, "u1", [Seed("x y z"), Seed("x y z")])
    keys = Keys.of(llm_settings).subject(TENANT, "u1")
    entry = redis_client.xadd(keys.wal, {"d": "{}"})
    redis_client.hset(keys.memories, mapping={records.COMPLETE: "1", records.NEWEST_CHANGE: entry})
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert report.skipped == {"waiting": 1} and report.merged == 0
    redis_client.xgroup_create(keys.wal, "persist", id="0")
    redis_client.xreadgroup("persist", "test", {keys.wal: ">"})
    assert consolidator(redis_client, engine, llm_settings).consolidate_due().skipped == {
        "waiting": 1
    }  # delivered, still pending
    redis_client.xack(keys.wal, "persist", entry)
    # The view was warmed above; the seeded rows are not in it (no remember wrote them).
    redis_client.delete(keys.memories)
    redis_client.hset(keys.memories, records.NEWEST_CHANGE, entry)
    assert consolidator(redis_client, engine, llm_settings).consolidate_due().merged == 1


def test_a_held_lease_skips_the_subject(
    redis_client: redis.Redis, engine: sa.Engine, llm_settings: Settings
) -> None:
    """Another worker consolidating the subject: this one leaves it alone."""
    seed(engine, TENANT, "u1", [Seed("x y z"), Seed("x y z")])
    redis_client.set(Keys.of(llm_settings).subject(TENANT, "u1").lease, "someone", px=60_000)
    report = consolidator(redis_client, engine, llm_settings).consolidate_due()
    assert report.skipped == {"busy": 1} and rows(engine) and lineage_rows(engine) == []
