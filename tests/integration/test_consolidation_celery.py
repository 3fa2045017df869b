"""llm.consolidate through real Celery workers: the beat task fans out one
llm.consolidate_subject per due subject (ids only), the llm workers merge, the fake OpenAI
server counts one call per near-duplicate cluster and none for exact duplicates, also when
two fan-outs race."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
import sqlalchemy as sa
from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from core.client import MemoryClient
from core.store.db import make_engine, memory_lineage
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.memories import merge_reply
from tests.integration.test_summarize_workers import wait_for
from worker import processes

SUBJECTS = 6


def test_llm_consolidate_runs_on_the_llm_workers(
    make_settings: Callable[..., Settings],
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Callable[..., Any],
) -> None:
    with FakeOpenAI(reply=merge_reply) as fake:
        settings = make_settings(
            database_url=pg_database, memory_merger="openai", openai_base_url=fake.url
        )
        client = MemoryClient(redis=redis_client, settings=settings)
        for i in range(SUBJECTS):
            subject = f"user-{i}"
            client.remember(subject, "The user lives in Berlin and works as a nurse.")
            client.remember(subject, "The user lives in Berlin and works as a night nurse.")
            client.remember(subject, "Owns a red bicycle.")
            client.remember(subject, "owns a  RED bicycle")
        for queues in (["persist"], ["llm"]):
            spawn(
                processes.worker_command(queues, concurrency=2, loglevel="WARNING"),
                settings=settings,
                name=queues[0],
            )
        spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
        engine = make_engine(pg_database)

        def stored() -> int:
            with engine.connect() as connection:
                return int(
                    connection.execute(sa.text("SELECT count(*) FROM memories")).scalar_one()
                )

        wait_for(lambda: stored() == 4 * SUBJECTS, what="the memories to be durable")
        sender = Celery("test", config_source=celery_config(settings), set_as_current=False)
        # Twice: every subject gets two tasks, which race on the two llm processes; the lease
        # and the guarded update still allow one merge (one LLM call) per cluster.
        sender.send_task("llm.consolidate", args=[], queue="llm")
        sender.send_task("llm.consolidate", args=[], queue="llm")

        def merged() -> int:
            with engine.connect() as connection:
                return int(
                    connection.execute(
                        sa.select(sa.func.count(sa.distinct(memory_lineage.c.merged_id)))
                    ).scalar_one()
                )

        wait_for(lambda: merged() == 2 * SUBJECTS, timeout_s=120, what="the merges")
        time.sleep(2)  # let the second fan-out's tasks finish: they must find nothing to do
        assert len(fake.requests()) == SUBJECTS  # one per near cluster, none for exact pairs
        assert merged() == 2 * SUBJECTS
        for i in range(SUBJECTS):
            live = client.recall(f"user-{i}", k=10)
            assert len(live) == 2 and all(m.merged_from for m in live)
        engine.dispose()
        client.close()
