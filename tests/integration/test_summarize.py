"""Summaries in process (no Celery): the trigger, the fold, the commit's guards, failures, the
buffer caps, budgets, read-through. Real Redis, real PostgreSQL, the real openai client
against the local fake server."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from config.settings import Settings
from core.client import MemoryClient
from core.errors import PermanentError, TransientError, ValidationError
from core.log.drainer import Drainer
from core.models import Message
from core.summaries import store as summary_store
from core.summaries.llm import ExtractiveBackend, LLMUnavailable, OpenAISummarizer, SummaryText
from core.summaries.status import summarization_status
from core.summaries.summarizer import SessionSummarizer, SummaryFenced
from tests.conftest import both_backends
from tests.fakes.openai_server import FakeOpenAI, server_error

SettingsFactory = Callable[..., Settings]
SUMMARY_SETTINGS = {"summary_trigger_tokens": 100, "keep_recent_tokens": 30}


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(database_url=database_url, **SUMMARY_SETTINGS)


@pytest.fixture
def sent() -> list[tuple[str, list[str]]]:
    return []


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings, sent: list[tuple[str, list[str]]]) -> Any:
    memory = MemoryClient(
        redis=redis_client, settings=settings, enqueue=lambda name, args: sent.append((name, args))
    )
    yield memory
    memory.engine.dispose()


def openai_backend(fake: FakeOpenAI, **options: Any) -> OpenAISummarizer:
    return OpenAISummarizer(api_key="test-key", model="gpt-4o-mini", base_url=fake.url, **options)


def summarizer(client: MemoryClient, backend: Any, settings: Settings | None = None) -> Any:
    return SessionSummarizer(
        redis=client.redis,
        engine=client.engine,
        settings=settings or client.settings,
        backend=backend,
    )


def turn(i: int) -> str:
    """About 12 tokens, with a marker the assertions can find again."""
    return f"note-{i}: Alice asked about order {1000 + i} today."


def fill(client: MemoryClient, count: int, *, session: str = "s", start: int = 0) -> list[Any]:
    return [
        client.append(session, "user" if i % 2 == 0 else "assistant", turn(i))
        for i in range(start, start + count)
    ]


def flagged(client: MemoryClient, session: str = "s") -> list[int]:
    wal = client.keys.session("default", session).wal
    return [int(f["q"]) for _, f in client.redis.xrange(wal) if f.get("sum") == "1"]


def durable(client: MemoryClient, settings: Settings) -> None:
    drainer = Drainer(redis=client.redis, engine=client.engine, settings=settings, consumer="t")
    assert drainer.flush(timeout_s=30) == 0


def snapshot(client: MemoryClient, session: str = "s") -> dict[str, Any]:
    keys = client.keys.session("default", session)
    meta = client.redis.hgetall(keys.meta)
    meta.pop("fence", None)  # a failed attempt took (and gave back) the lease
    return {"meta": meta, "buffer": client.redis.lrange(keys.buffer, 0, -1)}


def test_crossing_marks_exactly_one_wal_entry_while_pending(client: MemoryClient) -> None:
    """The append that reaches the trigger flags its WAL entry; later ones do not until commit."""
    results = fill(client, 14)
    crossed = [r.seq for r in results if r.summary_triggered]
    running = 0
    for r in results:
        running += r.tokens
        if running >= 100:
            assert crossed == [r.seq]
            break
    assert flagged(client) == crossed
    stats = client.memory_stats("s")
    assert (stats.crossings, stats.summary_pending, stats.unsummarized_tokens) == (
        1,
        True,
        sum(r.tokens for r in results),
    )


def test_summary_folds_the_oldest_and_keeps_recent_turns(
    client: MemoryClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """One LLM call folds the prefix; context() is the summary plus everything after it."""
    results = fill(client, 10)
    durable(client, settings)
    outcome = summarizer(client, openai_backend(fake_openai)).summarize("default", "s")
    assert (outcome.status, outcome.llm_called) == ("summarized", True)

    [request] = fake_openai.requests()
    assert request.authorized
    assert (request.body["model"], request.body["temperature"]) == ("gpt-4o-mini", 0)
    prompt = request.body["messages"][-1]["content"]
    folded = [r for r in results if r.seq <= outcome.covers_through_seq]
    kept = [r for r in results if r.seq > outcome.covers_through_seq]
    assert all(turn(r.seq - 1) in prompt for r in folded)
    assert not any(turn(r.seq - 1) in prompt for r in kept)
    # The newest messages that fit keep_recent_tokens stay verbatim; one more would not fit.
    assert sum(r.tokens for r in kept) <= 30 < sum(r.tokens for r in results[-len(kept) - 1 :])

    context = client.context("s")
    assert context.summary == f"Summary of {len(folded)} messages."
    assert context.covers_through_seq == outcome.covers_through_seq
    assert [m.seq for m in context.messages] == [r.seq for r in kept]
    assert context.omitted_messages == 0
    assert context.tokens == context.summary_tokens + sum(r.tokens for r in kept)
    stats = client.memory_stats("s")
    assert (stats.summary_count, stats.summary_pending) == (1, False)
    assert stats.unsummarized_tokens == sum(r.tokens for r in kept)
    [row] = summary_store.list_summaries(client.engine, tenant="default", session_id="s")
    assert (row.from_seq, row.covers_through_seq, row.text) == (
        1,
        outcome.covers_through_seq,
        context.summary,
    )
    assert row.folded_tokens == sum(r.tokens for r in folded)
    assert row.prompt_tokens > 0 and row.model == "openai:gpt-4o-mini"


class AppendsDuringCall:
    """A backend whose 'LLM call' lets the app append more messages while it runs."""

    name = "test:appends-during-call"
    paid = False

    def __init__(self, client: MemoryClient, count: int) -> None:
        self.client = client
        self.count = count
        self.arrived: list[Any] = []

    def describe(self) -> str:
        return self.name

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> SummaryText:
        self.arrived = fill(self.client, self.count, start=100)
        return SummaryText(f"summary through {messages[-1].seq}")


def test_messages_that_arrive_during_the_call_are_never_trimmed(client: MemoryClient) -> None:
    """Only the folded prefix leaves the buffer; what arrived meanwhile stays in context()."""
    results = fill(client, 10)
    backend = AppendsDuringCall(client, 6)
    outcome = summarizer(client, backend).summarize("default", "s")
    assert outcome.status == "summarized"
    context = client.context("s")
    expected = [r.seq for r in results if r.seq > outcome.covers_through_seq]
    expected += [r.seq for r in backend.arrived]
    assert [m.seq for m in context.messages] == expected
    assert context.summary == f"summary through {outcome.covers_through_seq}"
    assert client.memory_stats("s").unsummarized_tokens == sum(m.tokens for m in context.messages)


def test_a_duplicate_task_and_an_empty_fold_call_no_llm(
    client: MemoryClient, fake_openai: FakeOpenAI, sent: list[tuple[str, list[str]]]
) -> None:
    """Nothing pending: no-op. Pending but everything fits keep_recent: settled, no call."""
    fill(client, 1)
    service = summarizer(client, openai_backend(fake_openai))
    assert service.summarize("default", "s").status == "idle"
    assert client.request_summary("s") is True
    assert sent == [("llm.summarize", ["default", "s"])]
    assert client.request_summary("s") is False  # idempotent while pending
    assert service.summarize("default", "s").status == "nothing_to_fold"
    assert service.summarize("default", "s").status == "idle"
    assert fake_openai.requests() == []
    stats = client.memory_stats("s")
    assert (stats.summary_pending, stats.summary_count, stats.requests) == (False, 0, 1)
    assert service.summarize("default", "never-seen").status == "gone"


class StealsTheLease:
    """A backend during whose call the lease expires and another holder takes the session."""

    name = "test:slow"
    paid = False

    def __init__(self, client: MemoryClient) -> None:
        self.client = client
        self.calls = 0

    def describe(self) -> str:
        return self.name

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> SummaryText:
        self.calls += 1
        keys = self.client.keys.session("default", "s")
        self.client.redis.delete(keys.summary_lease)  # expired...
        token = self.client.redis.hincrby(keys.meta, "fence", 1)  # ...and taken by another
        self.client.redis.set(keys.summary_lease, token, px=60_000)
        return SummaryText(f"summary through {messages[-1].seq}")


def test_a_lost_lease_cannot_commit_and_the_retry_adopts_the_summary(
    client: MemoryClient, settings: Settings
) -> None:
    """Fencing: the late holder changes nothing; its retry reuses the summary, no second call."""
    fill(client, 10)
    before = snapshot(client)
    backend = StealsTheLease(client)
    service = summarizer(client, backend)
    with pytest.raises(SummaryFenced):
        service.summarize("default", "s")
    assert snapshot(client) == before
    client.redis.delete(client.keys.session("default", "s").summary_lease)  # the other one ends
    outcome = service.summarize("default", "s")
    assert (outcome.status, outcome.llm_called, backend.calls) == ("adopted", False, 1)
    assert client.context("s").summary == f"summary through {outcome.covers_through_seq}"
    assert len(summary_store.list_summaries(client.engine, tenant="default", session_id="s")) == 1


@pytest.mark.parametrize(
    ("answer", "error"), [(server_error(500), LLMUnavailable), (server_error(400), PermanentError)]
)
def test_a_failed_llm_call_leaves_history_untouched(
    client: MemoryClient, fake_openai: FakeOpenAI, answer: Any, error: type[Exception]
) -> None:
    """5xx is transient, 400 permanent; either way buffer, totals and summary are unchanged."""
    fill(client, 10)
    before = snapshot(client)
    fake_openai.script(answer)
    with pytest.raises(error):
        summarizer(client, openai_backend(fake_openai)).summarize("default", "s")
    assert snapshot(client) == before
    assert before["meta"]["pend"]  # still pending: the retry (or a replayed dead letter) folds
    assert not client.redis.exists(client.keys.session("default", "s").summary_lease)
    assert summary_store.list_summaries(client.engine, tenant="default", session_id="s") == []


@both_backends
def test_messages_the_caps_pushed_out_are_folded_from_the_store(
    client: MemoryClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """Past buffer_max_messages the oldest leave Redis unsummarized; the fold reads them back."""
    client.configure_session("s", buffer_max_messages=4)
    results = fill(client, 10)
    context = client.context("s")
    assert [m.seq for m in context.messages] == [7, 8, 9, 10]
    assert (context.covers_through_seq, context.omitted_messages) == (0, 6)
    service = summarizer(client, openai_backend(fake_openai))
    with pytest.raises(TransientError, match="not in the durable store yet"):
        service.summarize("default", "s")  # the drainer has not caught up: nothing changes
    assert fake_openai.requests() == []

    durable(client, settings)
    outcome = service.summarize("default", "s")
    prompt = fake_openai.requests()[0].body["messages"][-1]["content"]
    assert all(turn(r.seq - 1) in prompt for r in results if r.seq <= outcome.covers_through_seq)
    context = client.context("s")
    assert context.omitted_messages == 0
    assert [m.seq for m in context.messages] == list(range(outcome.covers_through_seq + 1, 11))
    assert client.memory_stats("s").unsummarized_tokens == sum(m.tokens for m in context.messages)


def test_configure_session_overrides_defaults_and_validates(
    client: MemoryClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-session settings change the trigger inside the same single append call."""
    effective = client.configure_session("a", summary_trigger_tokens=40, keep_recent_tokens=10)
    assert (effective.summary_trigger_tokens, effective.buffer_max_tokens) == (40, 4000)
    with pytest.raises(ValidationError) as error:
        client.configure_session("a", keep_recent_tokens=40)
    assert error.value.field == "keep_recent_tokens"
    assert client.memory_stats("a").settings == effective  # the refusal wrote nothing
    sent: list[str] = []
    send = client.redis.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return send(*args, **options)

    monkeypatch.setattr(client.redis, "execute_command", counted)
    a = [client.append("a", "user", turn(i)) for i in range(4)]
    b = [client.append("b", "user", turn(i)) for i in range(4)]
    # The overrides are read inside the script; each session's first append is the cold path
    # (a durable read, then the same script again with the session restored).
    assert sent == ["EVALSHA"] * 10
    assert any(r.summary_triggered for r in a) and not any(r.summary_triggered for r in b)
    assert client.configure_session("a", reset=True) == client.memory_defaults


@both_backends
def test_a_spent_budget_defers_summaries_and_status_says_so(
    client: MemoryClient, settings: Settings, fake_openai: FakeOpenAI
) -> None:
    """Once a tenant's daily tokens are spent, the next summary waits: no call, flag kept."""
    client.set_daily_token_budget("default", 50)
    service = summarizer(client, openai_backend(fake_openai))
    fill(client, 10)
    assert service.summarize("default", "s").status == "summarized"  # spends > 50 tokens
    fill(client, 10, start=10)
    outcome = service.summarize("default", "s")
    assert (outcome.status, len(fake_openai.requests())) == ("deferred", 1)
    assert client.memory_stats("s").summary_pending
    status = summarization_status(client.redis, client.keys, settings)
    [deferred] = status["deferred_by_budget"]
    assert (deferred["tenant"], deferred["sessions"], deferred["exhausted"]) == (
        "default",
        1,
        True,
    )
    assert deferred["spent_today"] >= 50 and status["pending"]["sessions"] == 1
    client.set_daily_token_budget("default", 0)  # no limit: the deferred summary goes through
    assert service.summarize("default", "s").status == "summarized"
    assert summarization_status(client.redis, client.keys, settings)["deferred_by_budget"] == []
    assert summary_store.usage_on(client.engine, tenant="default", day=_today())["calls"] == 2


def _today() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC).date()


@both_backends
def test_a_cold_session_reads_through_its_latest_summary(
    client: MemoryClient, settings: Settings
) -> None:
    """After Redis loses a session: the latest summary plus what follows, then re-warmed."""
    service = summarizer(client, ExtractiveBackend(tokens=client.tokens, max_tokens=200))
    fill(client, 10)
    first = service.summarize("default", "s")
    fill(client, 10, start=10)
    second = service.summarize("default", "s")
    fill(client, 2, start=20)
    durable(client, settings)
    warm = client.context("s")
    keys = client.keys.session("default", "s")
    client.redis.delete(*keys.own())

    cold = client.context("s")
    assert cold.from_durable_store
    assert (cold.summary, cold.covers_through_seq) == (warm.summary, second.covers_through_seq)
    assert first.covers_through_seq < second.covers_through_seq
    assert [m.seq for m in cold.messages] == [m.seq for m in warm.messages]
    assert (cold.tokens, cold.omitted_messages) == (warm.tokens, 0)
    again = client.context("s")
    assert not again.from_durable_store and again.messages == cold.messages
    stats = client.memory_stats("s")
    assert (stats.summary_count, stats.last_seq) == (2, 22)
    assert stats.unsummarized_tokens == sum(m.tokens for m in cold.messages)
    assert client.append("s", "user", "after the re-warm").seq == 23


def test_summaries_are_idempotent_on_covers_through_seq(client: MemoryClient) -> None:
    """A second summary through the same seq is not stored; the first one is returned."""
    fill(client, 10)
    service = summarizer(client, ExtractiveBackend(tokens=client.tokens, max_tokens=200))
    outcome = service.summarize("default", "s")
    [row] = summary_store.list_summaries(client.engine, tenant="default", session_id="s")
    other = summary_store.SummaryRecord(**{**_fields(row), "text": "a different text"})
    stored = summary_store.save_summary(client.engine, other, usage="never")
    assert (stored.text, stored.covers_through_seq) == (row.text, outcome.covers_through_seq)


def _fields(row: summary_store.SummaryRecord) -> dict[str, Any]:
    return {name: getattr(row, name) for name in summary_store.SummaryRecord.__slots__}


def test_without_an_api_key_the_local_extractive_summarizer_is_used(
    client: MemoryClient, settings: Settings
) -> None:
    """The embedded default is named as such in status and in the stored summary."""
    from core.summaries.llm import build_backend

    backend = build_backend(settings, client.tokens)
    assert backend.name == "local-extractive"
    status = summarization_status(client.redis, client.keys, settings)
    assert status["backend"].startswith("local-extractive (no API key")
    fill(client, 10)
    summarizer(client, backend).summarize("default", "s")
    [row] = summary_store.list_summaries(client.engine, tenant="default", session_id="s")
    assert row.model == "local-extractive" and "order 1000" in row.text
    assert (row.prompt_tokens, row.completion_tokens) == (0, 0)


def test_a_request_that_cannot_be_sent_is_taken_back(
    redis_client: redis.Redis, settings: Settings
) -> None:
    """If the broker refuses the task, the session is not left pending with no task coming."""

    def refuse(_name: str, _args: list[str]) -> None:
        raise ConnectionError("broker down")

    memory = MemoryClient(redis=redis_client, settings=settings, enqueue=refuse)
    memory.append("s", "user", turn(0))
    with pytest.raises(ConnectionError):
        memory.request_summary("s")
    assert not memory.memory_stats("s").summary_pending
    assert redis_client.zcard(memory.keys.session("default", "s").summary_pending) == 0
    without = MemoryClient(redis=redis_client, settings=settings)
    from core.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="broker_enqueue"):
        without.request_summary("s")
