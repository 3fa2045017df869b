"""Fault: remember from 4 threads x 5,000 while persist workers are killed with SIGKILL three
times mid-drain. Set check: every memory id acknowledged is in the store exactly once, with
its content, and recall still returns each subject's memories."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from config.settings import Settings
from core.client import MemoryClient
from core.crypto.vault import vault_for
from core.errors import TransientError
from core.store.db import make_engine
from tests.chaos.load import wait_until_durable
from tests.helpers.memories import rows as memory_rows
from worker import processes

THREADS = 4
PER_THREAD = 5000
KILLS = 3
SUBJECTS = 50


@pytest.fixture
def chaos_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        drain_lease_ms=500, flush_interval_s=0.2, flush_budget_s=0.5, batch_size=200
    )


def _remember_all(client: MemoryClient, index: int, out: dict[str, tuple[str, str]]) -> None:
    mine: dict[str, tuple[str, str]] = {}
    for i in range(PER_THREAD):
        subject = f"subject-{(i * 7 + index) % SUBJECTS}"
        content = f"fact {i} from thread {index}: likes tea ✓ \t\\"
        while True:
            try:
                memory_id = client.remember(subject, content, tags=[f"t{index}"])
                break
            except (TransientError, redis.RedisError):
                time.sleep(0.01)  # backpressure or a blip: a retry is idempotent only by id
        mine[memory_id] = (subject, content)
    out.update(mine)


def test_sigkilled_workers_lose_and_double_no_memory(
    redis_client: redis.Redis,
    chaos_settings: Settings,
    spawn: Callable[..., object],
    tmp_path: Path,
    pg_database: str,
) -> None:
    client = MemoryClient(redis=redis_client, settings=chaos_settings)
    spawn(processes.beat_command(loglevel="WARNING"), settings=chaos_settings, name="beat")
    written: dict[str, tuple[str, str]] = {}
    threads = [
        threading.Thread(target=_remember_all, args=(client, index, written))
        for index in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for kill in range(KILLS):
        worker = spawn(
            processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
            settings=chaos_settings,
            name=f"worker-{kill}",
        )
        time.sleep(2.5)  # start-up takes about a second: the kill lands mid-drain
        processes.kill(worker)  # type: ignore[arg-type]
    for thread in threads:
        thread.join()
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
        settings=chaos_settings,
        name="worker-final",
    )
    assert wait_until_durable(client, timeout_s=180) == 0
    assert len(written) == THREADS * PER_THREAD

    engine = make_engine(pg_database)
    vault_for(engine, client.settings)  # content is sealed: open it with the workers' keys
    with engine.connect() as connection:
        ids = list(connection.execute(sa.text("SELECT memory_id FROM memories")).scalars())
    stored = {
        memory_id: (row["subject_id"], row["content"])
        for memory_id, row in memory_rows(engine).items()
    }
    engine.dispose()
    lost = set(written) - set(stored)
    assert len(ids) == len(set(ids))  # the primary key, but said out loud: no duplicates
    assert lost == set()
    assert stored == written
    # No memory id is left in the shards' index of memories not yet durable.
    assert sum(client.redis.hlen(key) for key in client.keys.all_pending_memory_ids()) == 0
    recalled = client.recall("subject-3", k=1000)
    assert {m.memory_id for m in recalled} == {
        memory_id for memory_id, (subject, _) in written.items() if subject == "subject-3"
    }
    print(f"\nremember x{len(written)} through kill -9 x{KILLS}: lost=0 duplicated=0")
