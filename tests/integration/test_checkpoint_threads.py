"""delete_for_runs and prune reach checkpoints Redis no longer holds: the runs' index in
Redis for the undrained, the store for the rest; the result holds after the drain and after
Redis forgets."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import empty_checkpoint

from core.checkpoints.store import CheckpointStore
from core.client import MemoryClient
from core.integrations.langgraph import MemscribeSaver
from core.log.drainer import Drainer


def _put(saver: MemscribeSaver, thread: str, run_id: str, parent: str | None = None) -> str:
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if parent:
        config["configurable"]["checkpoint_id"] = parent
    stored = saver.put(
        config, empty_checkpoint(), {"source": "loop", "step": 1, "run_id": run_id}, {}
    )  # type: ignore[arg-type]
    return str(stored["configurable"]["checkpoint_id"])


def _runs(saver: MemscribeSaver, thread: str) -> list[str]:
    config = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    return [found.metadata["run_id"] for found in saver.list(config)]  # type: ignore[typeddict-item]


def test_delete_for_runs_reaches_drained_and_undrained_threads(
    client: MemoryClient, drainer: Drainer
) -> None:
    store = CheckpointStore(
        redis=client.redis, settings=client.settings, engine=lambda: client.engine
    )
    saver = MemscribeSaver(store=store, tenant="acme")
    first = _put(saver, "old", "run-a")
    _put(saver, "old", "run-b", parent=first)
    drainer.flush(timeout_s=10)
    client.redis.flushdb()  # Redis forgot "old" and the runs' index: the store answers
    _put(saver, "new", "run-a")
    _put(saver, "new", "run-c")
    saver.delete_for_runs(["run-a", "*"])  # a run id is never a pattern
    assert _runs(saver, "old") == ["run-b"]
    assert _runs(saver, "new") == ["run-c"]
    drainer.flush(timeout_s=10)
    client.redis.flushdb()
    assert _runs(saver, "old") == ["run-b"]
    assert _runs(saver, "new") == ["run-c"]


def test_prune_keeps_the_newest_of_each_namespace_through_the_store(
    client: MemoryClient, drainer: Drainer
) -> None:
    store = CheckpointStore(
        redis=client.redis, settings=client.settings, engine=lambda: client.engine
    )
    saver = MemscribeSaver(store=store, tenant="acme")
    ids = []
    for run in ("r1", "r2", "r3"):
        ids.append(_put(saver, "t", run, parent=ids[-1] if ids else None))
    drainer.flush(timeout_s=10)
    client.redis.flushdb()
    saver.prune(["t"])
    assert _runs(saver, "t") == ["r3"]
    drainer.flush(timeout_s=10)
    client.redis.flushdb()
    assert _runs(saver, "t") == ["r3"]
    latest = saver.get_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
    assert latest is not None and latest.checkpoint["id"] == ids[-1]
