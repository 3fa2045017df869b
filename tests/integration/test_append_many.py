"""append_many: N messages of one session in one EVALSHA, all or nothing, idempotent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from config.settings import Settings
from core.client import MemoryClient
from core.errors import BackpressureError, ValidationError
from core.log.drainer import Drainer
from tests.conftest import assert_exactly_once
from tests.helpers.redis_state import redis_snapshot


def _count_commands(client: MemoryClient, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    send = client.redis.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        sent.append(str(args[0]))
        return send(*args, **options)

    monkeypatch.setattr(client.redis, "execute_command", counted)
    return sent


def test_a_tool_call_and_its_result_cost_one_round_trip(
    client: MemoryClient, drainer: Drainer, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.append("agent", "user", "what is the weather in Paris?")  # the session is warm
    sent = _count_commands(client, monkeypatch)
    results = client.append_many(
        "agent",
        [
            {"role": "assistant", "content": '{"tool": "weather", "city": "Paris"}'},
            {"role": "tool", "content": "14 C, light rain", "metadata": {"tool": "weather"}},
            {"role": "assistant", "content": "It is 14 C with light rain.", "message_id": "m-3"},
        ],
    )
    assert sent == ["EVALSHA"]
    assert [r.seq for r in results] == [2, 3, 4]
    assert results[2].message_id == "m-3" and not any(r.duplicate for r in results)
    assert [m.seq for m in client.context("agent").messages] == [1, 2, 3, 4]
    assert drainer.flush(timeout_s=30) == 0
    context = client.context("agent")
    appended = {m.message_id: ("default", "agent", m.seq, m.content) for m in context.messages}
    assert_exactly_once(database_url, appended)


def test_one_bad_message_refuses_the_whole_batch(
    client: MemoryClient, redis_client: redis.Redis
) -> None:
    client.append("s", "user", "first")
    before = redis_snapshot(redis_client)
    batch: list[dict[str, Any]] = [
        {"role": "user", "content": "fine"},
        {"role": "user", "content": "fine too"},
        {"role": "user", "content": "x" * (client.settings.max_content_bytes + 1)},
    ]
    with pytest.raises(ValidationError) as error:
        client.append_many("s", batch)
    assert error.value.field == "messages[2].content"
    assert "limit" in str(error.value)
    cases: list[tuple[object, str]] = [
        ([{"role": "robot", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "x", "colour": "red"}], "messages[0]"),
        ([], "messages"),
        ("not a list", "messages"),
        ([{"role": "user", "content": "x"}] * 1001, "messages"),
        ([{"role": "user", "content": "x", "message_id": "bad id!"}], "messages[0].message_id"),
    ]
    for messages, field in cases:
        with pytest.raises(ValidationError) as error:
            client.append_many("s", messages)  # type: ignore[arg-type]
        assert error.value.field == field
    assert redis_snapshot(redis_client) == before


def test_a_retried_batch_is_a_no_op_and_a_partial_one_appends_the_rest(
    client: MemoryClient,
) -> None:
    batch = [
        {"role": "user", "content": "a", "message_id": "a"},
        {"role": "assistant", "content": "b", "message_id": "b"},
    ]
    first = client.append_many("s", batch)
    again = client.append_many("s", batch)
    assert [(r.seq, r.duplicate) for r in again] == [(1, True), (2, True)]
    assert [r.seq for r in first] == [1, 2]
    mixed = client.append_many(
        "s",
        [*batch[1:], {"role": "user", "content": "c", "message_id": "c"}, batch[1]],
    )
    assert [(r.seq, r.duplicate) for r in mixed] == [(2, True), (3, False), (2, True)]
    assert [m.message_id for m in client.context("s").messages] == ["a", "b", "c"]


def test_backpressure_refuses_the_whole_batch(
    redis_client: redis.Redis, make_settings: Callable[..., Settings], database_url: str
) -> None:
    settings = make_settings(database_url=database_url, shards=1, max_wal_backlog=4)
    client = MemoryClient(redis=redis_client, settings=settings)
    client.append_many("s", [{"role": "user", "content": str(i)} for i in range(3)])
    before = redis_snapshot(redis_client)
    with pytest.raises(BackpressureError):
        client.append_many("s", [{"role": "user", "content": str(i)} for i in range(2)])
    assert redis_snapshot(redis_client) == before
    assert client.append_many("s", [{"role": "user", "content": "fits"}])[0].seq == 4


def test_the_crossing_is_marked_on_the_message_that_crossed(client: MemoryClient) -> None:
    client.configure_session("s", summary_trigger_tokens=30, keep_recent_tokens=5)
    results = client.append_many(
        "s", [{"role": "user", "content": "several words of a message " * 2} for _ in range(6)]
    )
    crossed = [r.summary_triggered for r in results]
    assert crossed.count(True) == 1
    running = 0
    for result, flag in zip(results, crossed, strict=True):
        running += result.tokens
        if flag:
            assert running >= 30 and running - result.tokens < 30
    assert client.memory_stats("s").summary_pending
