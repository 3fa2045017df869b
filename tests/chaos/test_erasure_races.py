"""Erasure races (issue 12): erase_subject while something of the subject is in flight. Each
ends with verify clean (zero residue in Redis, PostgreSQL, WALs, dead letters and caches) and
every message appended after the erasure present exactly once.

In flight: appends that keep coming; a drainer holding the subject's entries, killed with
SIGKILL before its commit (and one after its commit, before XACK); a summarize call inside a
slow (2 s) LLM call; consolidation of the subject's memories inside its LLM call; a dead-letter
replay of the subject's entry. And 100 subjects erased while 4 threads append for 1,000
others: the others' set check is exact.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from config.settings import Settings
from core.client import MemoryClient
from core.erasure.job import ErasureJob
from core.erasure.verify import Verification, verify_subject
from core.log import deadletters
from core.log.drainer import Drainer
from core.memories.consolidate import Consolidator
from core.store.db import make_engine
from core.summaries.llm import OpenAISummarizer
from core.summaries.summarizer import SessionSummarizer
from tests.conftest import ROOT, SettingsFactory, assert_exactly_once
from tests.fakes.openai_server import FakeOpenAI
from tests.helpers.memories import merge_reply
from tests.helpers.store_text import session_contents
from tests.integration.test_reclaim import _wait_ready
from worker import processes


class Recorder:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[str]]] = []

    def __call__(self, name: str, args: list[str]) -> None:
        self.tasks.append((name, args))


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Iterator[MemoryClient]:
    memory = MemoryClient(redis=redis_client, settings=settings, enqueue=Recorder())
    yield memory
    memory.engine.dispose()


def finish(client: MemoryClient, drainer: Drainer, receipt_id: str) -> None:
    """Drain what is left, run the job, drain again (nothing of before may come back)."""
    assert drainer.flush(timeout_s=30) == 0
    ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(receipt_id)
    assert drainer.flush(timeout_s=30) == 0


def verified(client: MemoryClient, subject: str) -> Verification:
    found = verify_subject(
        redis_client=client.redis,
        engine=client.engine,
        settings=client.settings,
        tenant="default",
        subject_id=subject,
    )
    assert found.clean, found.residue
    return found


def test_appends_keep_coming_during_the_erasure(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    done = threading.Event()
    acked: list[tuple[float, float, str, str]] = []  # (started, finished, session, content)

    def append_forever() -> None:
        i = 0
        while not done.is_set():
            session = f"s{i % 3}"
            started = time.monotonic()
            client.append(session, "user", f"alice {i}", subject_id="alice")
            acked.append((started, time.monotonic(), session, f"alice {i}"))
            i += 1
            time.sleep(0.002)

    def drain_forever() -> None:
        while not done.is_set():
            drainer.drain_all(budget_s=0.2)

    threads = [threading.Thread(target=append_forever), threading.Thread(target=drain_forever)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    erase_started = time.monotonic()
    receipt = client.erase_subject("alice", request_id="race-appends")
    erase_ended = time.monotonic()
    time.sleep(1.5)
    done.set()
    for thread in threads:
        thread.join()
    finish(client, drainer, receipt.receipt_id)

    verified(client, "alice")
    before = {content for _s, finished, _ss, content in acked if finished < erase_started}
    after = [(session, content) for started, _f, session, content in acked if started > erase_ended]
    assert len(before) > 100 and len(after) > 100
    for session in ("s0", "s1", "s2"):
        stored = session_contents(pg_database, session)
        assert len(stored) == len(set(stored))  # nothing twice
        assert not before & set(stored)  # nothing of before
        wanted = [content for s, content in after if s == session]
        assert [c for c in stored if c in set(wanted)] == wanted  # all of after, in order


@pytest.mark.parametrize("stage", ["read", "commit"])
def test_a_drainer_killed_holding_the_subjects_entries(
    client: MemoryClient,
    drainer: Drainer,
    settings: Settings,
    spawn: Callable[..., Any],
    tmp_path: Path,
    pg_database: str,
    stage: str,
) -> None:
    for i in range(50):
        client.append("a", "user", f"alice {i}", subject_id="alice")
    doomed = spawn(
        [sys.executable, str(ROOT / "tests/helpers/drain_then_hang.py"), stage],
        settings=settings,
        name="doomed",
    )
    assert _wait_ready(tmp_path / "doomed.log") == 50  # held, pending, not acked
    receipt = client.erase_subject("alice", request_id=f"race-kill-{stage}")
    processes.kill(doomed)
    time.sleep(settings.drain_lease_ms / 1000 + 0.2)  # reclaimable now
    after = client.append("a", "user", "alice after", subject_id="alice")
    finish(client, drainer, receipt.receipt_id)  # the reclaim meets the floor

    verified(client, "alice")
    assert session_contents(pg_database, "a") == ["alice after"]
    assert after.seq == 51


def test_a_summarize_inside_a_slow_llm_call(
    redis_client: redis.Redis, make_settings: SettingsFactory, pg_database: str
) -> None:
    with FakeOpenAI(latency_s=2.0) as fake:
        settings = make_settings(summary_trigger_tokens=100, keep_recent_tokens=30)
        client = MemoryClient(redis=redis_client, settings=settings, enqueue=Recorder())
        drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
        for i in range(20):
            client.append("a", "user", f"alice note {i} about her order", subject_id="alice")
        drainer.flush(timeout_s=10)
        backend = OpenAISummarizer(
            api_key="test-key", model="gpt-4o-mini", base_url=fake.url, timeout_s=10
        )
        summarizer = SessionSummarizer(
            redis=redis_client, engine=client.engine, settings=settings, backend=backend
        )
        outcome: list[Any] = []
        call = threading.Thread(target=lambda: outcome.append(summarizer.summarize("default", "a")))
        call.start()
        time.sleep(0.7)  # inside the LLM call
        assert len(fake.requests()) == 1
        receipt = client.erase_subject("alice", request_id="race-summary")
        call.join()
        finish(client, drainer, receipt.receipt_id)

        assert outcome[0].status == "cleared"
        verified(client, "alice")
        engine = make_engine(pg_database)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM summaries")).scalar() == 0
        engine.dispose()
        assert client.context("a").summary is None
        client.engine.dispose()


def test_consolidation_running_on_the_subjects_memories(
    redis_client: redis.Redis, make_settings: SettingsFactory, pg_database: str
) -> None:
    with FakeOpenAI(latency_s=2.0, reply=merge_reply) as fake:
        settings = make_settings(
            openai_api_key="test-key", openai_base_url=fake.url, memory_merger="auto"
        )
        client = MemoryClient(redis=redis_client, settings=settings, enqueue=Recorder())
        drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
        client.remember("alice", "Alice lives in Berlin and works as a nurse.")
        client.remember("alice", "Alice lives in Berlin and works as a night nurse.")
        drainer.flush(timeout_s=10)
        consolidator = Consolidator(redis=redis_client, engine=client.engine, settings=settings)
        reports: list[Any] = []
        run = threading.Thread(
            target=lambda: reports.append(consolidator.consolidate_subject("default", "alice"))
        )
        run.start()
        deadline = time.monotonic() + 10
        while not fake.requests() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.requests()  # inside the merge call
        receipt = client.erase_subject("alice", request_id="race-consolidation")
        run.join()
        finish(client, drainer, receipt.receipt_id)

        assert reports[0].merged == 0
        verified(client, "alice")
        engine = make_engine(pg_database)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM memories")).scalar() == 0
        engine.dispose()
        assert client.recall("alice") == []
        client.engine.dispose()


def test_a_dead_letter_replay_of_the_subjects_entry(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    client.append("a", "user", "alice poison", subject_id="alice")
    shard = client.keys.session("default", "a").shard
    wal = client.keys.wal(shard)
    # As the drainer dead-letters an entry: its own fields, moved to the dead-letter stream.
    [(entry_id, fields)] = client.redis.xrange(wal)
    record = deadletters.wal_record(
        {k.encode(): v.encode() for k, v in fields.items()},
        entry_id=entry_id,
        error="test",
        deliveries=6,
        first_failed_ms=0,
        now_ms=0,
    )
    client.redis.xadd(client.keys.dead_letters(shard), record)  # type: ignore[arg-type]
    client.redis.xdel(wal, entry_id)
    [dead] = deadletters.list_dead_letters(client.redis, client.keys)

    receipt = client.erase_subject("alice", request_id="race-dlq")
    # The replay is issued after the erasure's request, before its job.
    assert deadletters.replay_wal(client.redis, client.keys, client.scripts, dead.id)
    finish(client, drainer, receipt.receipt_id)

    verified(client, "alice")
    assert session_contents(pg_database, "a") == []
    assert deadletters.list_dead_letters(client.redis, client.keys) == []


def test_100_subjects_erased_while_4_threads_append_for_1000_others(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    doomed = [f"gone{i}" for i in range(100)]
    for subject in doomed:
        client.append(f"{subject}-s", "user", f"{subject} before", subject_id=subject)
        client.remember(subject, f"{subject} remembers")
    drainer.flush(timeout_s=30)
    appended: dict[str, tuple[str, str, int, str]] = {}
    lock = threading.Lock()
    done = threading.Event()

    def append(worker: int) -> None:
        rng = random.Random(worker)
        i = 0
        while not done.is_set() or i < 500:
            other = rng.randrange(1000)
            content = f"other{other} w{worker} {i}"
            result = client.append(f"o{other}", "user", content, subject_id=f"other{other}")
            with lock:
                appended[result.message_id] = ("default", f"o{other}", result.seq, content)
            i += 1

    def drain() -> None:
        while not done.is_set():
            drainer.drain_all(budget_s=0.2)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=drain))
    for thread in threads:
        thread.start()
    receipts = [client.erase_subject(s, request_id=f"bulk-{s}") for s in doomed]
    done.set()
    for thread in threads:
        thread.join()
    assert drainer.flush(timeout_s=60) == 0
    job = ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings)
    for receipt in receipts:
        assert job.run(receipt.receipt_id).status == "completed"
    assert drainer.flush(timeout_s=60) == 0

    assert len(appended) >= 2000
    assert_exactly_once(pg_database, appended)  # the others: nothing lost, nothing twice
    for subject in random.Random(7).sample(doomed, 10):
        verified(client, subject)
