"""P5 with real Celery workers: one LLM call per crossing cluster-wide, nothing trimmed that
arrived during a slow call, and failures retried with backoff then dead-lettered with the
history intact. The LLM is the local fake server; every message carries a marker the fake
echoes into its summaries, so the set check runs through the LLM chain itself."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from config.celery import celery_config
from config.settings import Settings
from core.client import MemoryClient
from core.log import deadletters
from core.log.drainer import Drainer
from core.log.status import shard_status
from core.summaries import store as summary_store
from tasks import persist
from tests.fakes.openai_server import FakeOpenAI, rate_limited, server_error, slow
from worker import processes

SettingsFactory = Callable[..., Settings]
Spawn = Callable[..., Any]
MARKER = re.compile(r"m-\d+-\d+")


def echo_markers(body: dict[str, Any]) -> str:
    """The fake LLM's summary: every marker of the previous summary and the folded messages."""
    return "Known: " + " ".join(MARKER.findall(body["messages"][-1]["content"]))


def llm_settings(
    make_settings: SettingsFactory, database: str, fake: FakeOpenAI, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "database_url": database,
        "summarizer": "openai",  # a keyless OpenAI-compatible server: no secret in the env
        "openai_base_url": fake.url,
        "summary_trigger_tokens": 100,
        "keep_recent_tokens": 30,
        "retry_base_ms": 20,
        "max_retries": 3,
    }
    return make_settings(**{**values, **extra})


def start_pipeline(spawn: Spawn, settings: Settings, *, llm_concurrency: int) -> None:
    spawn(
        processes.worker_command(["persist"], concurrency=1, loglevel="WARNING"),
        settings=settings,
        name="persist",
    )
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
    spawn(
        processes.worker_command(["llm"], concurrency=llm_concurrency, loglevel="WARNING"),
        settings=settings,
        name="llm",
    )


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 90, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or condition}")


def pending_summaries(client: MemoryClient) -> int:
    return sum(
        int(client.redis.zcard(client.keys.summary_pending(shard)))
        for shard in range(client.keys.shards)
    )


def quiet(client: MemoryClient) -> bool:
    """Everything durable and no summary pending anywhere (no LLM call can still happen)."""
    backlog = sum(s.backlog for s in shard_status(client.redis, client.keys))
    return backlog == 0 and pending_summaries(client) == 0


def markers_in_context(client: MemoryClient, session: str) -> tuple[list[str], Any]:
    context = client.context(session)
    found = MARKER.findall(context.summary or "")
    for message in context.messages:
        found += MARKER.findall(message.content)
    return found, context


def test_one_llm_call_per_crossing_across_four_workers(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
) -> None:
    """50 appenders drive 200 sessions across the trigger 3 times each, 4 llm processes: LLM
    calls == crossings; summaries chain contiguously; no acknowledged message is ever missing
    from summary + context()."""
    sessions, appenders, target = 200, 50, 3
    fake_openai.reply = echo_markers
    settings = llm_settings(
        make_settings,
        pg_database,
        fake_openai,
        buffer_max_messages=10_000,
        buffer_max_tokens=10_000_000,
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    start_pipeline(spawn, settings, llm_concurrency=4)

    acked: dict[str, list[str]] = {f"chat-{i}": [] for i in range(sessions)}
    crossed = dict.fromkeys(acked, 0)
    lock = threading.Lock()
    done = threading.Event()
    violations: list[str] = []
    checks = 0

    def appender(index: int) -> None:
        # Each session is shared by two appenders, so seq assignment races for real.
        mine = [f"chat-{s}" for s in range(sessions) if s % (appenders // 2) == index % 25]
        i = 0
        while active := [s for s in mine if crossed[s] < target and len(acked[s]) < 600]:
            for session in active:
                marker = f"m-{index}-{i}"
                i += 1
                result = client.append(session, "user", f"{marker} Alice paid {i} euros.")
                with lock:
                    acked[session].append(marker)
                    crossed[session] += result.summary_triggered
            time.sleep(0.2)  # a chat's pace: summaries commit while the session goes on

    def checker() -> None:
        nonlocal checks
        rng = random.Random(7)
        while not done.is_set():
            session = f"chat-{rng.randrange(sessions)}"
            with lock:
                before = list(acked[session])
            found, context = markers_in_context(client, session)
            seqs = [m.seq for m in context.messages]
            after = context.covers_through_seq
            if seqs != list(range(after + 1, after + 1 + len(seqs))) or context.omitted_messages:
                violations.append(f"{session}: gap after summary {after}: {seqs[:3]}")
            if set(before) - set(found) or len(found) != len(set(found)):
                violations.append(f"{session}: missing {set(before) - set(found)}")
            checks += 1
            time.sleep(0.005)

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(appenders)]
    watcher = threading.Thread(target=checker)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: quiet(client), timeout_s=120, what="summaries to settle")
    done.set()
    watcher.join()
    assert violations == [] and checks > 0
    assert min(crossed.values()) >= target, "every session crosses the trigger several times"

    meta = {s: client.redis.hgetall(client.keys.session("default", s).meta) for s in acked}
    assert {s: int(m["xc"]) for s, m in meta.items()} == crossed
    assert len(fake_openai.requests()) == sum(crossed.values())
    for session, markers in acked.items():
        rows = summary_store.list_summaries(client.engine, tenant="default", session_id=session)
        assert len(rows) == crossed[session]
        assert [r.from_seq for r in rows] == [1] + [r.covers_through_seq + 1 for r in rows[:-1]]
        found, context = markers_in_context(client, session)
        assert context.summary == rows[-1].text
        assert context.covers_through_seq == rows[-1].covers_through_seq
        assert [m.seq for m in context.messages] == list(
            range(rows[-1].covers_through_seq + 1, len(markers) + 1)
        )
        assert sorted(found) == sorted(markers)
    client.engine.dispose()


def test_messages_arriving_during_a_slow_llm_call_stay(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
) -> None:
    """While the LLM takes 2 s, appends continue; none of them is trimmed by the commit."""
    fake_openai.reply = echo_markers
    fake_openai.latency_s = 2.0
    settings = llm_settings(make_settings, pg_database, fake_openai)
    client = MemoryClient(redis=redis_client, settings=settings)
    start_pipeline(spawn, settings, llm_concurrency=1)
    markers = []
    i = 0
    while True:
        markers.append(f"m-0-{i}")
        if client.append("s", "user", f"m-0-{i} Bob wants {i} chairs.").summary_triggered:
            break
        i += 1
    fake_openai.wait_for_requests(1, timeout_s=60)
    during = []
    for j in range(5):
        markers.append(f"m-1-{j}")
        during.append(client.append("s", "assistant", f"m-1-{j} noted, {j} more.").seq)
    meta = client.keys.session("default", "s").meta
    assert not client.redis.hget(meta, "nsum"), "the LLM answered before the appends finished"
    wait_for(lambda: client.redis.hget(meta, "nsum") == "1", what="the summary commit")

    found, context = markers_in_context(client, "s")
    assert set(during) <= {m.seq for m in context.messages}
    assert context.covers_through_seq < min(during)
    assert sorted(found) == sorted(markers)
    assert len(fake_openai.requests()) == 1
    client.engine.dispose()


@pytest.fixture
def publisher(make_settings: SettingsFactory) -> Celery:
    return Celery(
        "test-publisher", config_source=celery_config(make_settings()), set_as_current=False
    )


def crossed_and_durable(client: MemoryClient, settings: Settings) -> None:
    for i in range(12):
        client.append("s", "user", f"m-0-{i} Carol moved to room {i}.")
    assert client.memory_stats("s").summary_pending
    drainer = Drainer(redis=client.redis, engine=client.engine, settings=settings, consumer="t")
    assert drainer.flush(timeout_s=30) == 0


def snapshot(client: MemoryClient) -> dict[str, Any]:
    keys = client.keys.session("default", "s")
    meta = client.redis.hgetall(keys.meta)
    meta.pop("fence", None)
    return {"meta": meta, "buffer": client.redis.lrange(keys.buffer, 0, -1)}


def retry_countdowns(log: Path) -> list[tuple[int, float]]:
    text = log.read_text(errors="replace")
    return [
        (int(n), float(s)) for n, s in re.findall(r"llm\.summarize retry (\d+) in ([\d.]+)s", text)
    ]


def test_rate_limits_are_retried_after_retry_after(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
    publisher: Celery,
    tmp_path: Path,
) -> None:
    """429 with Retry-After: 1 twice, then an answer: retried no sooner than asked, one summary."""
    settings = llm_settings(make_settings, pg_database, fake_openai)
    client = MemoryClient(redis=redis_client, settings=settings)
    crossed_and_durable(client, settings)
    fake_openai.script(rate_limited("1"), rate_limited("1"))
    spawn(
        processes.worker_command(["llm"], concurrency=1, loglevel="WARNING"),
        settings=settings,
        name="llm",
    )
    publisher.send_task("llm.summarize", args=["default", "s"], queue="llm")
    wait_for(lambda: client.memory_stats("s").summary_count == 1, what="the summary")
    arrivals = [request.at for request in fake_openai.requests()]
    assert len(arrivals) == 3
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(arrivals))
    assert [n for n, countdown in retry_countdowns(tmp_path / "llm.log") if countdown >= 1.0] == [
        1,
        2,
    ]
    assert deadletters.list_dead_letters(client.redis, client.keys) == []
    client.engine.dispose()


@pytest.mark.parametrize("failure", ["http-500", "timeout"])
def test_exhausted_retries_dead_letter_and_keep_history(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
    publisher: Celery,
    tmp_path: Path,
    failure: str,
) -> None:
    """500s or timeouts on every attempt: 1 + max_retries calls with growing backoff ceilings,
    then a dead letter naming the task and session; buffer, totals and summaries unchanged."""
    settings = llm_settings(make_settings, pg_database, fake_openai, llm_timeout_s=0.2)
    client = MemoryClient(redis=redis_client, settings=settings)
    crossed_and_durable(client, settings)
    before = snapshot(client)
    answer = server_error(500) if failure == "http-500" else slow(1.0)
    fake_openai.script(*[answer] * 4)
    spawn(
        processes.worker_command(["llm"], concurrency=1, loglevel="WARNING"),
        settings=settings,
        name="llm",
    )
    publisher.send_task("llm.summarize", args=["default", "s"], queue="llm")

    [letter] = wait_for(
        lambda: deadletters.list_dead_letters(client.redis, client.keys), what="a dead letter"
    )
    assert (letter.kind, letter.detail["task"], letter.detail["args"]) == (
        "task",
        "llm.summarize",
        ["default", "s"],
    )
    assert letter.attempts == 4 == len(fake_openai.requests())
    assert ("HTTP 500" if failure == "http-500" else "timed out") in letter.error
    countdowns = retry_countdowns(tmp_path / "llm.log")
    assert [n for n, _ in countdowns] == [1, 2, 3]
    # Full jitter: each wait is drawn below a ceiling that doubles (base 20 ms * 2**retry).
    assert all(0 <= countdown <= 0.02 * 2 ** (n - 1) + 1e-3 for n, countdown in countdowns)
    assert snapshot(client) == before
    assert summary_store.list_summaries(client.engine, tenant="default", session_id="s") == []
    assert client.memory_stats("s").summary_pending  # a replayed dead letter can still fold
    client.engine.dispose()


def test_a_summarize_whose_publish_failed_is_sent_again(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drainer's send of llm.summarize fails (broker away) after the crossing's entry is
    durable and acked: the flush goes on, the session stays pending, and llm.resend_stale
    (beat) asks again within summary_resend_after_s, not an hour later. One LLM call."""
    fake_openai.reply = echo_markers
    settings = llm_settings(make_settings, pg_database, fake_openai, summary_resend_after_s=1.0)
    client = MemoryClient(redis=redis_client, settings=settings)
    drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
    results = [client.append("s", "user", f"m-1-{i} " + "word " * 20) for i in range(6)]
    assert any(r.summary_triggered for r in results)
    report = drainer.run_for(0.5)
    assert report.summarize == {("default", "s")}

    def broker_down(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(persist, "send_summarize", broker_down)
    persist._after_pass(report)  # logs and goes on: the entries are durable already
    assert client.memory_stats("s").summary_pending
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
    spawn(
        processes.worker_command(["llm"], concurrency=1, loglevel="WARNING"),
        settings=settings,
        name="llm",
    )
    wait_for(lambda: client.memory_stats("s").summary_count == 1, what="the re-sent summary")
    assert len(fake_openai.requests()) == 1
    assert not client.memory_stats("s").summary_pending
    client.engine.dispose()
