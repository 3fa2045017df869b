"""Consolidation's guarantees over random memory sets and random (often hostile) LLM answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from core.memories import records
from core.memories.consolidate import Consolidator
from core.store.db import make_engine
from core.store.keys import Keys
from tests.conftest import SettingsFactory
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.memories import Seed, lineage_rows, merge_reply, rows, seed, truncate_memories

FACTS = [
    "The user lives in Porto and works as a dentist",
    "The user prefers window seats on long flights",
    "The user has a daughter named Ines who plays the cello",
    "The user is training for the Berlin marathon in September",
    "The user drinks oat milk and avoids dairy",
]
PARAPHRASE_TAILS = ["", " these days", " as of this year", " according to the user"]


@st.composite
def memory_sets(draw: st.DrawFn) -> list[Seed]:
    count = draw(st.integers(min_value=1, max_value=9))
    found = []
    for _ in range(count):
        kind = draw(st.sampled_from(["exact", "near", "unrelated"]))
        fact = draw(st.sampled_from(FACTS))
        if kind == "exact":
            text = draw(st.sampled_from([fact + ".", fact.upper(), f"  {fact.lower()}! "]))
        elif kind == "near":
            text = fact + draw(st.sampled_from(PARAPHRASE_TAILS[1:])) + "."
        else:
            words = draw(
                st.lists(
                    st.sampled_from(["kiwi", "zinc", "opal", "fern", "moss", "lynx"]),
                    min_size=2,
                    max_size=5,
                )
            )
            text = " ".join(words) + f" {draw(st.integers(0, 10_000))}."
        found.append(
            Seed(
                text,
                priority=draw(st.integers(min_value=1, max_value=4)),
                pinned=draw(st.booleans()),
                tags=draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=2)),
            )
        )
    return found


def hostile(kind: str, junk: str) -> Any:
    def reply(body: dict[str, Any]) -> str:
        good = merge_reply(body)
        return {
            "good": good,
            "empty": "",
            "huge": good * 60,
            "truncated": good[: len(good) // 3],
            "drops": body["messages"][-1]["content"].splitlines()[1].split(". ", 1)[1],
            "invents": good + " The user also owns a yacht moored in Monaco.",
            "junk": junk,
        }[kind]

    return reply


@pytest.fixture
def engine(pg_database: str) -> Iterator[sa.Engine]:
    engine = make_engine(pg_database)
    yield engine
    engine.dispose()


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def llm_settings(make_settings: SettingsFactory, fake_llm: FakeOpenAI) -> Settings:
    return make_settings(openai_api_key="k", openai_base_url=fake_llm.url)


def _protected(row: dict[str, Any]) -> bool:
    return row["priority"] == 4 or row["pinned"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seeds=memory_sets(),
    answer=st.sampled_from(["good", "empty", "huge", "truncated", "drops", "invents", "junk"]),
    junk=st.text(min_size=0, max_size=40),
)
def test_consolidation_keeps_its_promises(
    redis_client: redis.Redis,
    engine: sa.Engine,
    llm_settings: Settings,
    fake_llm: FakeOpenAI,
    seeds: list[Seed],
    answer: str,
    junk: str,
) -> None:
    """CRITICAL/pinned untouched, every source reachable through lineage, twice = once."""
    redis_client.flushdb()
    truncate_memories(engine)
    fake_llm.reply = hostile(answer, junk)
    seeded = seed(engine, "t", "s", seeds)
    before = rows(engine)
    calls_before = len(fake_llm.requests())
    first = Consolidator(redis=redis_client, engine=engine, settings=llm_settings).consolidate_due()
    after = rows(engine)
    lineage = lineage_rows(engine)
    view = redis_client.hgetall(Keys.of(llm_settings).subject("t", "s").memories)
    assert len(fake_llm.requests()) - calls_before == first.llm_calls

    for memory_id in seeded:
        row, was = after[memory_id], before[memory_id]
        assert row["content"] == was["content"]  # no source is ever rewritten
        if _protected(was):
            assert row == was  # CRITICAL and pinned rows: not a byte changed
            if not view:  # nothing was due: the view was never warmed
                continue
            entry = records.parse_live(memory_id, view[memory_id])
            assert entry is not None and entry.record["c"] == was["content"]  # still recalled
    sources: dict[str, int] = {}
    for link in lineage:
        sources[link["source_id"]] = sources.get(link["source_id"], 0) + 1
        assert after[link["source_id"]]["superseded_by"] == link["merged_id"]
        assert not _protected(after[link["source_id"]])
    assert all(count == 1 for count in sources.values())
    for memory_id, row in after.items():
        if row["superseded_by"] is not None:
            assert memory_id in sources  # reachable: lineage links it to what replaced it
            assert view[memory_id].startswith(f">{row['superseded_by']}|")
        if memory_id not in seeded:  # a merged memory
            folded = [link["source_id"] for link in lineage if link["merged_id"] == memory_id]
            assert row["provenance"]["memories"] == folded
            assert row["priority"] == max(after[s]["priority"] for s in folded)
            assert row["priority"] < 4 and not row["pinned"]
    assert first.merged == len({link["merged_id"] for link in lineage})
    assert first.superseded == len(lineage)

    calls_between = len(fake_llm.requests())
    second = Consolidator(
        redis=redis_client, engine=engine, settings=llm_settings
    ).consolidate_due()
    assert (second.merged, second.clusters, second.llm_calls) == (0, 0, 0)
    assert len(fake_llm.requests()) == calls_between
    assert rows(engine) == after
    assert redis_client.hgetall(Keys.of(llm_settings).subject("t", "s").memories) == view
