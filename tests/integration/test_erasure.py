"""erase_subject and erase_tenant: a receipt at once, a barrier nothing in flight crosses, then
the job deletes the rest; replays are idempotent; messages appended afterwards are kept."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from core.client import MemoryClient
from core.erasure.job import ErasureJob
from core.errors import ValidationError
from core.log.drainer import Drainer
from core.store.db import make_engine
from tests.conftest import both_backends, messages_in_store
from tests.helpers.store_text import rows_mentioning


class Sent:
    """An enqueue that records tasks (the job is then run in-process)."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[str]]] = []

    def __call__(self, name: str, args: list[str]) -> None:
        self.tasks.append((name, args))


def count(url: str, sql: str, **params: Any) -> int:
    engine = make_engine(url)
    with engine.connect() as connection:
        value = connection.execute(sa.text(sql), params).scalar()
    engine.dispose()
    return int(value or 0)


@pytest.fixture
def sent(client: MemoryClient) -> Sent:
    recorder = Sent()
    client._enqueue = recorder
    return recorder


def _fill(client: MemoryClient, drainer: Drainer, subject: str) -> None:
    for i in range(4):
        client.append("a", "user", f"{subject} drained {i}", subject_id=subject)
    client.remember(subject, f"{subject} likes tea", memory_id="m-drained")
    client.update_state("a", lambda data: {**data, "note": f"{subject} state"})
    client.put_result("a", {"found": f"{subject} result"}, result_id="r1")
    drainer.flush(timeout_s=10)
    # Not yet drained when the erasure comes: WAL entries, buffer, view.
    client.append("b", "user", f"{subject} undrained", subject_id=subject)
    client.append("a", "user", f"{subject} undrained in a", subject_id=subject)
    client.remember(subject, f"{subject} lives in Lyon", memory_id="m-undrained")


@both_backends
def test_erase_subject_removes_everything_and_keeps_what_comes_after(
    client: MemoryClient, drainer: Drainer, sent: Sent, database_url: str
) -> None:
    _fill(client, drainer, "alice")
    client.append("other", "user", "bob stays", subject_id="bob")
    client.remember("bob", "bob likes coffee")

    receipt = client.erase_subject("alice", tenant="default", request_id="req-1")

    assert receipt.status == "pending"
    assert sent.tasks == [("maintenance.erase", [receipt.receipt_id])]  # the receipt id only
    assert "alice" not in str(receipt.as_dict())
    # The barrier holds at once: nothing of before in Redis, and a drain writes nothing back.
    assert client.recall("alice") == []
    assert client.context("a").messages == []
    assert client.context("b").messages == []
    after = client.append("a", "user", "alice after the erasure", subject_id="alice")
    drainer.flush(timeout_s=10)
    # Rows drained before the erasure are still there until the job runs, but their key is
    # destroyed: they read as nothing (crypto-shredding).
    drained_before = [r for r in messages_in_store(database_url) if r.session_id == "a"]
    assert len(drained_before) >= 4
    assert all(r.content is None for r in drained_before if r.seq <= 4)
    # Entries in flight at the erasure meet the floors and tombstones: none is written.
    # (Rows drained before it are unreadable once the keys are gone; the job deletes them.)
    assert rows_mentioning(database_url, "undrained") == 0
    assert rows_mentioning(database_url, "Lyon") == 0

    done = ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )

    assert done.status == "completed"
    assert client.erasure_status(receipt.receipt_id).status == "completed"
    assert done.counts["residue"] == {"wal": 0, "dead_letters": 0}
    assert done.counts["barred"]["sessions"] == 2
    assert done.counts["barred"]["memories"] == 2
    for text in ("likes tea", "Lyon", "alice state", "alice result", "alice drained"):
        assert rows_mentioning(database_url, text) == 0, text
    # New data is kept: the message appended after the erasure, and bob's data.
    assert [m.content for m in client.context("a").messages] == ["alice after the erasure"]
    assert (
        count(
            database_url,
            "SELECT count(*) FROM messages WHERE seq = :s AND session_id = 'a'",
            s=after.seq,
        )
        == 1
    )
    assert rows_mentioning(database_url, "bob stays") == 1
    assert [m.content for m in client.recall("bob")] == ["bob likes coffee"]


def test_a_replay_returns_the_same_receipt_and_other_arguments_are_refused(
    client: MemoryClient, drainer: Drainer, sent: Sent
) -> None:
    _fill(client, drainer, "alice")
    first = client.erase_subject("alice", request_id="req-1")
    again = client.erase_subject("alice", request_id="req-1")
    assert again.receipt_id == first.receipt_id
    with pytest.raises(ValidationError, match="request_id"):
        client.erase_subject("carol", request_id="req-1")
    with pytest.raises(ValidationError, match="subject_id"):
        client.erase_subject("not a valid id!", request_id="req-2")
    with pytest.raises(ValidationError, match="receipt_id"):
        client.erasure_status("er-unknown")
    # The refused calls changed nothing: carol's data (none) and the receipt count.
    assert count(client.settings.database_url, "SELECT count(*) FROM erasure_receipts") == 1


def test_an_unknown_subject_completes_with_nothing_removed(
    client: MemoryClient, sent: Sent
) -> None:
    receipt = client.erase_subject("nobody", request_id="req-nobody")
    done = ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )
    assert done.status == "completed"
    assert done.counts["barred"] == {
        "sessions": 0,
        "memories": 0,
        "cache": 0,
        "checkpoint_threads": 0,
    }


def test_erase_tenant_removes_the_tenant_only(
    client: MemoryClient, drainer: Drainer, sent: Sent, pg_database: str
) -> None:
    for tenant in ("t1", "t2"):
        client.append("s", "user", f"{tenant} message", tenant=tenant, subject_id="u")
        client.remember("u", f"{tenant} memory", tenant=tenant)
    drainer.flush(timeout_s=10)
    client.append("s2", "user", "t1 undrained", tenant="t1")
    receipt = client.erase_tenant("t1", request_id="req-t1")
    drainer.flush(timeout_s=10)
    ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )
    assert rows_mentioning(pg_database, "t1 ") == 0
    assert rows_mentioning(pg_database, "t2 message") == 1
    assert [m.content for m in client.recall("u", tenant="t2")] == ["t2 memory"]
    assert client.context("s", tenant="t1").messages == []


def test_a_real_worker_completes_the_receipt_from_its_id_alone(
    redis_client: Any, settings: Any, spawn: Any, pg_database: str, tmp_path: Any
) -> None:
    import json as _json
    import time

    from tasks.llm import broker_enqueue
    from tests.conftest import BROKER_URL
    from worker import processes

    client = MemoryClient(redis=redis_client, settings=settings, enqueue=broker_enqueue(settings))
    for i in range(5):
        client.append("a", "user", f"alice {i}", subject_id="alice")
    receipt = client.erase_subject("alice", request_id="worker-1")
    # What the broker holds names the receipt, never the subject.
    broker = redis_client.from_url(BROKER_URL, decode_responses=True)
    queued = broker.lrange("maintenance", 0, -1)
    assert len(queued) == 1 and "alice" not in queued[0]
    assert _json.loads(queued[0])["headers"]["argsrepr"] == repr([receipt.receipt_id])
    spawn(
        processes.worker_command(["persist", "maintenance"], concurrency=1, loglevel="WARNING"),
        settings=settings,
        name="worker",
    )
    deadline = time.monotonic() + 60
    while client.erasure_status(receipt.receipt_id).status != "completed":
        assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
        time.sleep(0.2)
    assert rows_mentioning(pg_database, "alice") == 0
    client.engine.dispose()
