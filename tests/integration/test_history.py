"""history(): scroll-back over every message of a session, wherever each one is; summary history
and is_available()."""

from __future__ import annotations

import itertools
import random
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from config.settings import Settings
from core.client import MemoryClient
from core.errors import ValidationError
from core.log.drainer import Drainer
from core.models import HistoryPage
from core.sessions import history as history_module
from core.store.connections import redis_from_url
from core.summaries.llm import ExtractiveBackend
from core.summaries.summarizer import SessionSummarizer
from tests.conftest import SettingsFactory, both_backends

# A small buffer, so most of a session lives outside Redis's window.
BUFFER = {"buffer_max_messages": 8, "summary_trigger_tokens": 100, "keep_recent_tokens": 30}


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    return make_settings(database_url=database_url, **BUFFER)


def text(i: int) -> str:
    return f"turn {i}: the user asked about order {1000 + i}."


def fill(client: MemoryClient, start: int, stop: int, session: str = "s") -> None:
    for i in range(start, stop):
        role = "user" if i % 2 else "assistant"
        client.append(session, role, text(i), message_id=f"m-{session}-{i}", metadata={"i": i})


def pages(client: MemoryClient, *, limit: int, session: str = "s") -> list[HistoryPage]:
    """Every page, newest first, following next_before_seq until it is None."""
    found: list[HistoryPage] = []
    before: int | None = None
    while True:
        page = client.history(session, before_seq=before, limit=limit)
        found.append(page)
        if page.next_before_seq is None:
            return found
        assert before is None or page.next_before_seq < before
        before = page.next_before_seq
        assert len(found) < 1000


def assert_every_seq_once(found: list[HistoryPage], *, count: int, limit: int) -> None:
    """Seqs 1..count, each exactly once, in order; every page full but the oldest."""
    seqs = [m.seq for page in reversed(found) for m in page.messages]
    assert seqs == list(range(1, count + 1))
    assert len(set(seqs)) == count
    for page in found[:-1]:
        assert len(page.messages) == limit
    for page in found:
        assert [m.seq for m in page.messages] == sorted(m.seq for m in page.messages)
        for message in page.messages:
            assert message.content == text(message.seq - 1)
            assert message.message_id == f"m-s-{message.seq - 1}"
            assert message.metadata == {"i": message.seq - 1}


def summarize(client: MemoryClient) -> None:
    backend = ExtractiveBackend(tokens=client.tokens, max_tokens=60)
    summarizer = SessionSummarizer(
        redis=client.redis, engine=client.engine, settings=client.settings, backend=backend
    )
    assert summarizer.summarize("default", "s").status == "summarized"


def buffered_seqs(client: MemoryClient) -> list[int]:
    items = client.redis.lrange(client.keys.session("default", "s").buffer, 0, -1)
    return [int(item.split(":", 1)[0]) for item in items]  # type: ignore[union-attr]


def test_a_page_inside_the_buffer_never_touches_the_store(
    make_settings: SettingsFactory, redis_client: redis.Redis, pg_database: str
) -> None:
    """All in Redis and in the buffer: pages come from Redis alone (no engine is even made)."""
    # pg_database: an empty store, so the first (cold) append starts the session at seq 1.
    settings = make_settings(buffer_max_messages=100)
    fill(MemoryClient(redis=redis_client, settings=settings), 0, 23)
    client = MemoryClient(redis=redis_client, settings=settings)  # the first append read the store
    found = pages(client, limit=5)
    assert_every_seq_once(found, count=23, limit=5)
    assert [page.next_before_seq for page in found] == [19, 14, 9, 4, None]
    assert not any(page.from_durable_store for page in found)
    assert client._engine is None


@both_backends
def test_nothing_drained_and_past_the_buffer_reads_the_wal(client: MemoryClient) -> None:
    """Messages that left the buffer before the drainer ran come from the WAL."""
    fill(client, 0, 30)
    assert len(buffered_seqs(client)) == 8
    found = pages(client, limit=7)
    assert_every_seq_once(found, count=30, limit=7)
    assert not any(page.from_durable_store for page in found)


@both_backends
def test_all_drained_and_the_buffer_trimmed_by_a_summary(
    client: MemoryClient, drainer: Drainer
) -> None:
    """Everything durable and a summary has folded most of the buffer: older pages come from
    the store, the newest from Redis."""
    fill(client, 0, 40)
    assert drainer.flush(timeout_s=30) == 0
    summarize(client)
    head = buffered_seqs(client)[0]
    assert head > 30  # the summary trimmed the buffer's head
    assert client.context("s").covers_through_seq == head - 1
    for limit in (1, 2, 6):
        found = pages(client, limit=limit)
        assert_every_seq_once(found, count=40, limit=limit)
        for page in found:
            assert page.from_durable_store == (page.messages[0].seq < head)


@pytest.mark.parametrize("limit", [1, 3, 8, 50])
def test_a_mix_of_drained_and_not(client: MemoryClient, drainer: Drainer, limit: int) -> None:
    """Some drained, the newest not (several of them already pushed out of the buffer)."""
    fill(client, 0, 25)
    assert drainer.flush(timeout_s=30) == 0
    fill(client, 25, 45)
    assert buffered_seqs(client) == list(range(38, 46))
    found = pages(client, limit=limit)
    assert_every_seq_once(found, count=45, limit=limit)
    assert found[-1].from_durable_store


@both_backends
def test_redis_forgot_the_session(client: MemoryClient, drainer: Drainer) -> None:
    """With the session's Redis keys deleted, pages come from the store and do not re-warm it."""
    fill(client, 0, 33)
    assert drainer.flush(timeout_s=30) == 0
    keys = client.keys.session("default", "s")
    client.redis.delete(*keys.own())
    found = pages(client, limit=10)
    assert_every_seq_once(found, count=33, limit=10)
    assert all(page.from_durable_store for page in found)
    assert client.redis.exists(keys.meta, keys.buffer) == 0  # history only reads


def test_redis_forgot_the_session_before_the_drainer_ran(
    client: MemoryClient, drainer: Drainer
) -> None:
    """Keys gone while the newest messages are still only in the WAL: store plus WAL."""
    fill(client, 0, 12)
    assert drainer.flush(timeout_s=30) == 0
    fill(client, 12, 27)
    client.redis.delete(*client.keys.session("default", "s").own())
    found = pages(client, limit=4)
    assert_every_seq_once(found, count=27, limit=4)
    assert not found[0].from_durable_store  # 24..27 come from the WAL
    assert found[-1].from_durable_store


def test_a_session_restored_above_undrained_messages(
    client: MemoryClient, drainer: Drainer
) -> None:
    """Forgotten with messages still in the WAL, then appended to: the restored buffer jumps
    over them (store tail, then seqs above the high water); pages still hold every seq."""
    fill(client, 0, 10)
    assert drainer.flush(timeout_s=30) == 0
    fill(client, 10, 16)
    client.redis.delete(*client.keys.session("default", "s").own())
    fill(client, 16, 19)
    assert buffered_seqs(client) == [5, 6, 7, 8, 9, 10, 17, 18, 19][-8:]
    for limit in (2, 5, 19):
        assert_every_seq_once(pages(client, limit=limit), count=19, limit=limit)


def test_messages_drained_between_the_two_reads_are_not_lost(
    client: MemoryClient, drainer: Drainer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The drainer commits and trims the WAL after history read the store: the store is asked
    again for what the WAL no longer holds."""
    fill(client, 0, 20)
    real = history_module._from_wal
    calls = []

    def drain_first(*args: Any) -> Any:
        calls.append(args[2])
        assert drainer.flush(timeout_s=30) == 0  # commits, acks and trims the WAL
        return real(*args)

    monkeypatch.setattr(history_module, "_from_wal", drain_first)
    page = client.history("s", limit=15)
    assert [m.seq for m in page.messages] == list(range(6, 21))
    assert page.from_durable_store
    assert calls == [list(range(1, 13))]  # 13..20 were buffered; the rest may be anywhere


def test_pages_stay_exact_while_the_drainer_and_summaries_move(
    client: MemoryClient, drainer: Drainer
) -> None:
    """Random appends, drains, summaries and forgets between page reads: no seq twice or lost."""
    rng = random.Random(11)
    count = 0
    for _round in range(6):
        grow = rng.randint(3, 15)
        fill(client, count, count + grow)
        count += grow
        action = rng.choice(["drain", "summarize", "forget", "none"])
        if action in ("drain", "summarize"):
            assert drainer.flush(timeout_s=30) == 0
        if action == "summarize" and client.memory_stats("s").summary_pending:
            summarize(client)
        if action == "forget":
            client.redis.delete(*client.keys.session("default", "s").own())
        for limit in (1, 4, 9):
            assert_every_seq_once(pages(client, limit=limit), count=count, limit=limit)


def test_before_seq_bounds_the_page(client: MemoryClient, drainer: Drainer) -> None:
    """before_seq is exclusive; past the newest seq it means "the newest"; 1 is empty."""
    fill(client, 0, 20)
    assert drainer.flush(timeout_s=30) == 0
    page = client.history("s", before_seq=11, limit=3)
    assert ([m.seq for m in page.messages], page.next_before_seq) == ([8, 9, 10], 8)
    assert page.from_durable_store
    newest = client.history("s", before_seq=500, limit=3)
    assert [m.seq for m in newest.messages] == [18, 19, 20]
    assert not newest.from_durable_store
    first = client.history("s", before_seq=3, limit=10)
    assert ([m.seq for m in first.messages], first.next_before_seq) == ([1, 2], None)
    assert client.history("s", before_seq=1) == HistoryPage()


def test_an_unknown_session_has_an_empty_history(client: MemoryClient) -> None:
    """No such session in Redis or the store: an empty page, nothing older."""
    assert client.history("nobody") == HistoryPage(messages=[], next_before_seq=None)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "5"}, "limit"),
        ({"before_seq": 0}, "before_seq"),
        ({"before_seq": -3}, "before_seq"),
        ({"before_seq": 2.0}, "before_seq"),
        ({"before_seq": False}, "before_seq"),
        ({"tenant": "a:b"}, "tenant"),
    ],
)
def test_history_rejects_bad_arguments(
    client: MemoryClient, arguments: dict[str, Any], field: str
) -> None:
    """Bad limit, before_seq or ids raise ValidationError naming the field."""
    with pytest.raises(ValidationError) as caught:
        client.history("s", **arguments)
    assert caught.value.field == field


def test_summary_history_newest_first(client: MemoryClient, drainer: Drainer) -> None:
    """Each stored summary with its range, text, tokens and model; newest first, limited."""
    assert client.get_summary_history("s") == []
    for start in (0, 20, 40):
        fill(client, start, start + 20)
        assert drainer.flush(timeout_s=30) == 0
        summarize(client)
    history = client.get_summary_history("s")
    assert len(history) == 3
    covered = [record.covers_through_seq for record in history]
    assert covered == sorted(covered, reverse=True)
    assert history[0].covers_through_seq == client.context("s").covers_through_seq
    assert history[0].text == client.context("s").summary
    for newer, older in itertools.pairwise(history):
        assert newer.from_seq == older.covers_through_seq + 1
        assert newer.created_at >= older.created_at
    assert history[-1].from_seq == 1
    assert {record.model for record in history} == {"local-extractive"}
    assert all(record.tokens > 0 and record.text for record in history)
    assert client.get_summary_history("s", limit=2) == history[:2]
    with pytest.raises(ValidationError) as caught:
        client.get_summary_history("s", limit=0)
    assert caught.value.field == "limit"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def test_is_available(client: MemoryClient, silent_port: int) -> None:
    """True for the test Redis; False (never an exception) for a closed or a silent port."""
    assert client.is_available() is True
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # bound, never listening: connections are refused
        # The constructor loads the scripts, so point a working client at the dead server.
        client.redis = redis_from_url(f"redis://127.0.0.1:{closed}/0")
        assert client.is_available() is False
    client.redis = redis_from_url(f"redis://127.0.0.1:{silent_port}/0", socket_timeout=5)
    assert client.is_available() is False
