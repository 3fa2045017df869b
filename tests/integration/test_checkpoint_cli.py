"""``memscribe checkpoints`` as an operator runs it (a subprocess): list, copy, delete."""

from __future__ import annotations

import json
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from config.settings import Settings
from core.checkpoints.store import CheckpointStore
from core.client import MemoryClient
from core.integrations.langgraph import MemscribeSaver
from tests.integration.test_cli import memscribe


def _config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


def test_list_copy_and_delete_a_thread(client: MemoryClient, settings: Settings) -> None:
    store = CheckpointStore(redis=client.redis, settings=settings, engine=lambda: client.engine)
    saver = MemscribeSaver(store=store, tenant="acme")
    stored = saver.put(_config("t1"), empty_checkpoint(), {"source": "input", "step": -1}, {})  # type: ignore[arg-type]
    second = saver.put(stored, empty_checkpoint(), {"source": "loop", "step": 0}, {})  # type: ignore[arg-type]
    saver.put_writes(second, [("out", "x")], task_id="task-1")

    listed = memscribe(settings, "checkpoints", "list", "t1", "--tenant", "acme", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [row["step"] for row in rows] == [0, -1]
    assert rows[0]["parent_checkpoint_id"] == stored["configurable"]["checkpoint_id"]
    assert rows[0]["pending_writes"] == 1

    copied = memscribe(settings, "checkpoints", "copy", "t1", "t2", "--tenant", "acme")
    assert copied.returncode == 0, copied.stderr
    assert "copied 2 checkpoints" in copied.stdout
    assert [t.metadata["step"] for t in saver.list(_config("t2"))] == [0, -1]

    deleted = memscribe(settings, "checkpoints", "delete", "t1", "--tenant", "acme")
    assert deleted.returncode == 0, deleted.stderr
    assert saver.get_tuple(_config("t1")) is None
    assert saver.get_tuple(_config("t2")) is not None


def test_a_bad_thread_id_is_refused_by_name(settings: Settings) -> None:
    found = memscribe(settings, "checkpoints", "list", "no spaces", "--tenant", "acme")
    assert found.returncode == 2
    assert "thread_id" in found.stdout
