"""``memscribe memories consolidate`` run as operators run it (a subprocess)."""

from __future__ import annotations

import json

import redis
import sqlalchemy as sa

from config.settings import Settings
from core.store.db import make_engine
from tests.conftest import SettingsFactory
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.memories import Seed, merge_reply, rows, seed, truncate_memories
from tests.integration.test_cli import memscribe


def test_consolidate_one_subject_prints_the_summary(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis
) -> None:
    """--subject S consolidates S only, returns when done and prints what it did."""
    engine = make_engine(pg_database)
    truncate_memories(engine)
    near = ["Bob drives a red Volvo to work.", "Bob drives a red Volvo to work every day."]
    for subject in ("u1", "u2"):
        seed(engine, "acme", subject, [Seed(text) for text in near] + [Seed("x y"), Seed("X Y")])
    with FakeOpenAI(reply=merge_reply) as fake:
        settings: Settings = make_settings(
            database_url=pg_database, openai_api_key="k", openai_base_url=fake.url
        )
        result = memscribe(settings, "memories", "consolidate", "--subject", "u1")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "subjects 1, clusters 2, merged 2 (1 exact, 4 memories superseded)" in (
            result.stdout
        )
        assert "LLM calls 1" in result.stdout and len(fake.requests()) == 1
        untouched = [r for r in rows(engine).values() if r["subject_id"] == "u2"]
        assert all(r["superseded_by"] is None and r["examined_at"] is None for r in untouched)
        result = memscribe(settings, "memories", "consolidate", "--tenant", "acme", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        counts = json.loads(result.stdout)
        assert (counts["subjects"], counts["merged"], counts["llm_calls"]) == (1, 2, 1)
        again = json.loads(memscribe(settings, "memories", "consolidate", "--json").stdout)
        assert (again["subjects"], again["merged"], again["llm_calls"]) == (0, 0, 0)
        assert len(fake.requests()) == 2
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM memory_lineage")).scalar() == 8
    engine.dispose()
