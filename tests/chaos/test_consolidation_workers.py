"""Four consolidation processes at once over the same 200 subjects: one LLM call per cluster,
no memory superseded twice."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import redis
import sqlalchemy as sa

from core.store.db import make_engine
from tests.conftest import ROOT, SettingsFactory, settings_env
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.memories import Seed, lineage_rows, merge_reply, rows, seed, truncate_memories

SUBJECTS = 200
WORKERS = 4


def test_four_processes_make_one_llm_call_per_cluster(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Each subject: a near-duplicate pair (one LLM call), an exact pair (none), a loner."""
    engine = make_engine(pg_database)
    truncate_memories(engine)
    for index in range(SUBJECTS):
        seed(
            engine,
            "acme",
            f"user-{index:03d}",
            [
                Seed(f"Subject {index} lives in Porto and works as a dentist."),
                Seed(f"Subject {index} lives in Porto and works as a dentist these days."),
                Seed(f"Prefers aisle seats, code {index}."),
                Seed(f"prefers AISLE seats, code {index}"),
                Seed(f"Owns {index} stamps from Peru and Chile."),
            ],
        )
    with FakeOpenAI(reply=merge_reply, latency_s=0.01) as fake:
        settings = make_settings(
            database_url=pg_database, openai_api_key="k", openai_base_url=fake.url
        )
        env = {**settings_env(settings), "PATH": "/usr/bin:/bin"}
        logs = [tmp_path / f"worker-{i}.log" for i in range(WORKERS)]
        reports = []
        with ExitStack() as files:
            workers = [
                subprocess.Popen(
                    [sys.executable, "-m", "worker.cli", "memories", "consolidate", "--json"],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=files.enter_context(log.open("w")),
                    text=True,
                )
                for log in logs
            ]
            for worker, log in zip(workers, logs, strict=True):
                out, _ = worker.communicate(timeout=300)
                assert worker.returncode == 0, log.read_text()
                reports.append(json.loads(out))
        llm_requests = len(fake.requests())

    assert llm_requests == SUBJECTS  # one per near-duplicate cluster, none for exact pairs
    assert sum(report["llm_calls"] for report in reports) == SUBJECTS
    assert sum(report["merged"] for report in reports) == 2 * SUBJECTS
    assert sum(report["subjects"] for report in reports) >= SUBJECTS
    assert sum(1 for report in reports if report["merged"]) > 1  # the work was shared
    lineage = lineage_rows(engine)
    per_source = Counter(link["source_id"] for link in lineage)
    assert len(per_source) == 4 * SUBJECTS and set(per_source.values()) == {1}
    stored = rows(engine)
    superseded = [row for row in stored.values() if row["superseded_by"] is not None]
    assert len(superseded) == 4 * SUBJECTS
    assert all(per_source[row["memory_id"]] == 1 for row in superseded)
    assert {link["merged_id"] for link in lineage} == {row["superseded_by"] for row in superseded}
    assert len(stored) == 5 * SUBJECTS + 2 * SUBJECTS  # sources kept, one merged per cluster
    with engine.connect() as connection:
        calls = connection.execute(sa.text("SELECT sum(calls) FROM llm_usage")).scalar()
    assert calls == SUBJECTS
    engine.dispose()
