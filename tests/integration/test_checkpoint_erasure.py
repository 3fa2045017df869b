"""erase_tenant reaches LangGraph checkpoints: Redis, the WAL in flight, PostgreSQL. What comes
after the request is new data and is kept; the other tenant is untouched."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from langgraph.checkpoint.base import empty_checkpoint

from core.checkpoints.store import CheckpointStore
from core.client import MemoryClient
from core.erasure.job import ErasureJob
from core.errors import ValidationError
from core.integrations.langgraph import MemscribeSaver
from core.log.drainer import Drainer
from core.store.db import make_engine


class Sent:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[str]]] = []

    def __call__(self, name: str, args: list[str]) -> None:
        self.tasks.append((name, args))


def _put(saver: MemscribeSaver, thread: str, text: str, parent: str | None = None) -> str:
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    if parent:
        config["configurable"]["checkpoint_id"] = parent
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"notes": [text]}
    checkpoint["channel_versions"] = {"notes": saver.get_next_version(None, None)}
    stored = saver.put(
        config, checkpoint, {"source": "loop", "step": 0}, checkpoint["channel_versions"]
    )  # type: ignore[arg-type]
    saver.put_writes(stored, [("out", text)], task_id="t1")
    return str(stored["configurable"]["checkpoint_id"])


def _rows(url: str, tenant: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        total = sum(
            int(
                connection.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE tenant = :t"), {"t": tenant}
                ).scalar_one()
            )
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        )
    engine.dispose()
    return total


def _latest_notes(saver: MemscribeSaver, thread: str) -> list[str] | None:
    found = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
    return None if found is None else found.checkpoint["channel_values"]["notes"]


def test_erase_tenant_erases_its_checkpoints_and_keeps_what_comes_after(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    sent = Sent()
    client._enqueue = sent
    store = CheckpointStore(
        redis=client.redis, settings=client.settings, engine=lambda: client.engine
    )
    t1 = MemscribeSaver(store=store, tenant="t1")
    t2 = MemscribeSaver(store=store, tenant="t2")
    _put(t1, "drained", "t1 drained")
    _put(t2, "drained", "t2 drained")
    drainer.flush(timeout_s=10)
    client.redis.delete(
        *store.thread_keys("t1", "drained").data()
    )  # Redis forgot it: the store has it
    _put(t1, "in-flight", "t1 in the WAL")  # not drained when the erasure comes
    receipt = client.erase_tenant("t1", request_id="req-t1")
    assert receipt.counts["barred"]["checkpoint_threads"] == 2
    # Hidden at once, before any drain or job.
    assert _latest_notes(t1, "drained") is None
    assert _latest_notes(t1, "in-flight") is None
    after = _put(t1, "after", "t1 after the request")
    drainer.flush(timeout_s=10)
    ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )
    client.redis.flushdb()  # every answer below comes from PostgreSQL
    assert _latest_notes(t1, "drained") is None
    assert _latest_notes(t1, "in-flight") is None
    assert _latest_notes(t1, "after") == ["t1 after the request"]
    found = t1.get_tuple({"configurable": {"thread_id": "after", "checkpoint_ns": ""}})
    assert found is not None and found.checkpoint["id"] == after
    assert _rows(pg_database, "t1") == 3  # the new checkpoint, its blob and its write
    assert _latest_notes(t2, "drained") == ["t2 drained"]
    assert _rows(pg_database, "t2") == 3


def _put_for(saver: MemscribeSaver, thread: str, user: str, text: str) -> None:
    config: dict[str, Any] = {
        "configurable": {"thread_id": thread, "checkpoint_ns": "", "user_id": user}
    }
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"notes": [text]}
    checkpoint["channel_versions"] = {"notes": saver.get_next_version(None, None)}
    stored = saver.put(
        config, checkpoint, {"source": "loop", "step": 0}, checkpoint["channel_versions"]
    )  # type: ignore[arg-type]
    saver.put_writes(
        {**stored, "configurable": {**stored["configurable"], "user_id": user}},
        [("out", text)],
        task_id="t1",
    )  # type: ignore[arg-type]


def _subject_rows(url: str, subject: str) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        total = sum(
            int(
                connection.execute(
                    sa.text(f"SELECT count(*) FROM {table} WHERE subject_id = :s"), {"s": subject}
                ).scalar_one()
            )
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        )
    engine.dispose()
    return total


def test_erase_subject_erases_the_threads_of_its_subject(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    client._enqueue = Sent()
    store = CheckpointStore(
        redis=client.redis, settings=client.settings, engine=lambda: client.engine
    )
    saver = MemscribeSaver(store=store, tenant="acme", subject_key="user_id")
    _put_for(saver, "ann-1", "ann", "ann drained")
    _put_for(saver, "bob-1", "bob", "bob drained")
    drainer.flush(timeout_s=10)
    assert _subject_rows(pg_database, "ann") == 3
    client.redis.flushdb()  # only the store knows ann-1 now
    _put_for(saver, "ann-2", "ann", "ann in the WAL")
    receipt = client.erase_subject("ann", tenant="acme", request_id="req-ann")
    assert receipt.counts["barred"]["checkpoint_threads"] == 2
    assert _latest_notes(saver, "ann-1") is None
    assert _latest_notes(saver, "ann-2") is None
    subject_index = store.thread_keys("acme", "ann-2").subject_threads("ann")
    assert client.redis.exists(subject_index) == 0
    drainer.flush(timeout_s=10)
    done = ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )
    assert done.counts["removed"]["checkpoints"] == 1  # ann-1's; ann-2's never landed
    client.redis.flushdb()
    assert _latest_notes(saver, "ann-1") is None
    assert _latest_notes(saver, "ann-2") is None
    assert _subject_rows(pg_database, "ann") == 0
    assert _latest_notes(saver, "bob-1") == ["bob drained"]
    assert _subject_rows(pg_database, "bob") == 3


def test_a_subject_id_is_checked(client: MemoryClient) -> None:
    store = CheckpointStore(
        redis=client.redis, settings=client.settings, engine=lambda: client.engine
    )
    saver = MemscribeSaver(store=store, tenant="acme", subject_key="user_id")
    before = client.redis.dbsize()
    try:
        _put_for(saver, "t", "not an id!", "x")
    except ValidationError as exc:
        assert exc.field == "subject_id"
    else:
        raise AssertionError("a bad subject id was accepted")
    assert client.redis.dbsize() == before
