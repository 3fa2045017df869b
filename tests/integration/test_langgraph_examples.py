"""docs/examples/langgraph_agent.py runs as a newcomer runs it: a subprocess with only the
MEMSCRIBE_* environment, against the test stores, sync and async, on both durable backends;
what it wrote drains without a dead letter, and nothing of its deleted threads is visible."""

from __future__ import annotations

import subprocess
import sys

import redis
import sqlalchemy as sa

from config.settings import Settings
from core.log.drainer import Drainer
from core.store.checkpoint_tables import (
    checkpoint_blobs,
    checkpoint_threads,
    checkpoint_writes,
    checkpoints,
)
from core.store.db import make_engine
from tests.conftest import ROOT, both_backends, settings_env

EXAMPLE = ROOT / "docs" / "examples" / "langgraph_agent.py"
VISIBLE = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")

SYNC_OUTPUT = [
    "turn 1: Order A-17 shipped Monday and arrives Thursday.",
    "turn 2: You're welcome! (6 messages on the thread)",
    "resumed: 6 messages, waiting for: input",
    "history: 8 checkpoints, newest first: 6 end, 5 agent, 4 __start__, 3 end, 2 agent,"
    " 1 tools, 0 agent, -1 __start__",
    "turn 3: It arrives Thursday.",
    "paused before tools: lookup_order(B-42)",
    "approved: Order B-42 is waiting for stock.",
    "deleted: 0 checkpoints left, state {}",
]
ASYNC_OUTPUT = [
    "async turn 1: A-17 arrives Thursday.",
    "async history: 5 checkpoints, newest first: 3 end, 2 agent, 1 tools, 0 agent, -1 __start__",
    "async deleted: state {}",
]


def _run_example(settings: Settings, *args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        cwd=ROOT,
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


def _rows(url: str) -> dict[str, tuple[int, int]]:
    """Per checkpoint table: (rows stored, rows no delete floor hides); and the floors."""
    engine = make_engine(url)
    counts = {}
    with engine.connect() as connection:
        for table in (checkpoints, checkpoint_blobs, checkpoint_writes):
            floor = (
                sa.select(checkpoint_threads.c.deleted_us)
                .where(
                    (checkpoint_threads.c.tenant == table.c.tenant)
                    & (checkpoint_threads.c.session_id == table.c.session_id)
                )
                .scalar_subquery()
            )
            stored = sa.select(sa.func.count()).select_from(table)
            visible = stored.where(table.c.written_us > sa.func.coalesce(floor, 0))
            counts[table.name] = (
                connection.execute(stored).scalar_one(),
                connection.execute(visible).scalar_one(),
            )
        floors = sa.select(sa.func.count()).select_from(checkpoint_threads)
        counts[checkpoint_threads.name] = (connection.execute(floors).scalar_one(), 0)
    engine.dispose()
    return counts


def _drain_everything(drainer: Drainer) -> None:
    assert sum(status.backlog for status in drainer.status()) > 0  # the example wrote the WAL
    assert drainer.flush(timeout_s=30) == 0
    assert sum(status.dead_letters for status in drainer.status()) == 0


@both_backends
def test_the_sync_example_prints_its_story(
    settings: Settings, redis_client: redis.Redis, drainer: Drainer
) -> None:
    """Two turns, a resume by a fresh saver, the history, an interrupt and delete_thread."""
    assert _run_example(settings) == SYNC_OUTPUT
    _drain_everything(drainer)
    rows = _rows(settings.database_url)
    assert rows["checkpoint_threads"] == (2, 0)  # both threads deleted, in the store too
    # Nothing of them is visible in the store: rows that drained with or before the delete's
    # floor are skipped or hidden (until the purge).
    assert [rows[table][1] for table in VISIBLE] == [0, 0, 0]


@both_backends
def test_the_async_example_prints_its_story(
    settings: Settings, redis_client: redis.Redis, drainer: Drainer
) -> None:
    """The same saver under ainvoke: a turn with a tool call, its history, delete_thread."""
    assert _run_example(settings, "--async") == ASYNC_OUTPUT
    _drain_everything(drainer)
    rows = _rows(settings.database_url)
    assert rows["checkpoint_threads"] == (1, 0)
    assert [rows[table][1] for table in VISIBLE] == [0, 0, 0]
