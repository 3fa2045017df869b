"""AsyncMemoryClient: the request path native on redis.asyncio (one EVALSHA warm), the rest of
MemoryClient's API as coroutines with the same signatures. Real Redis, real PostgreSQL."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis
import redis.asyncio

from config.settings import Settings
from core.async_client import AsyncMemoryClient
from core.client import MemoryClient, redis_from_url
from core.errors import ConfigurationError, ValidationError
from core.log.drainer import Drainer
from core.store.connections import async_redis_client
from core.store.scripts import lua_source
from tests.conftest import assert_exactly_once
from tests.helpers.private_redis import PrivateRedis, free_port

Appended = dict[str, tuple[str, str, int, str]]


@pytest_asyncio.fixture
async def aclient(client: MemoryClient, settings: Settings) -> AsyncIterator[AsyncMemoryClient]:
    """An async client sharing the test's sync client (and so its engine)."""
    memory = AsyncMemoryClient(redis=async_redis_client(settings), settings=settings, sync=client)
    yield memory
    await memory.aclose()


def _public_callables(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def test_every_public_method_has_an_async_twin_with_the_same_signature() -> None:
    """A method added to MemoryClient (or its mixins) later cannot be forgotten here."""
    sync_api = _public_callables(MemoryClient)
    async_api = _public_callables(AsyncMemoryClient)
    assert set(sync_api) <= set(async_api), sorted(set(sync_api) - set(async_api))
    # The whole API was found, the mixins' methods included.
    assert {"append", "context", "remember", "state", "clear_session", "erase_subject"} <= set(
        sync_api
    )
    for name, method in sync_api.items():
        twin = async_api[name]
        if name == "from_settings":  # the one constructor: same parameters, its own class
            assert not inspect.iscoroutinefunction(twin)
            assert inspect.signature(twin).parameters == inspect.signature(method).parameters
            continue
        assert inspect.iscoroutinefunction(twin), f"{name} is not async"
        assert inspect.signature(twin) == inspect.signature(method), name


@pytest.mark.asyncio
async def test_append_and_context_round_trip(
    aclient: AsyncMemoryClient, client: MemoryClient
) -> None:
    """Async appends come back from async and sync context() alike, in order, with metadata."""
    sent = [
        await aclient.append("s", role, f"turn {i}", metadata={"i": i})
        for i, role in enumerate(["user", "assistant", "user"])
    ]
    assert [r.seq for r in sent] == [1, 2, 3]
    context = await aclient.context("s")
    assert [(m.seq, m.role, m.content, m.metadata) for m in context.messages] == [
        (1, "user", "turn 0", {"i": 0}),
        (2, "assistant", "turn 1", {"i": 1}),
        (3, "user", "turn 2", {"i": 2}),
    ]
    assert [m.message_id for m in context.messages] == [r.message_id for r in sent]
    assert context.tokens == sum(r.tokens for r in sent)
    assert context == client.context("s")
    assert await aclient.context("never-seen") == client.context("never-seen")


@pytest.mark.asyncio
async def test_retrying_a_message_id_is_a_duplicate(aclient: AsyncMemoryClient) -> None:
    """The same message_id again returns the original seq, duplicate=True, and stores nothing."""
    first = await aclient.append("s", "user", "hello", message_id="m-1")
    again = await aclient.append("s", "user", "hello", message_id="m-1")
    [many] = await aclient.append_many(
        "s", [{"role": "user", "content": "hello", "message_id": "m-1"}]
    )
    assert (first.seq, first.duplicate) == (1, False)
    assert (again.seq, again.duplicate) == (1, True)
    assert (many.seq, many.duplicate) == (1, True)
    assert [m.seq for m in (await aclient.context("s")).messages] == [1]


@pytest.mark.asyncio
async def test_bad_input_names_the_field_and_writes_nothing(
    aclient: AsyncMemoryClient, redis_client: redis.Redis, settings: Settings
) -> None:
    """ValidationError names the field and its limit; Redis stays empty."""
    with pytest.raises(ValidationError) as bad_many:
        await aclient.append_many(
            "s", [{"role": "user", "content": "fine"}, {"role": "robot", "content": "x"}]
        )
    assert bad_many.value.field == "messages[1].role"
    with pytest.raises(ValidationError) as too_long:
        await aclient.append("s", "user", "x" * (settings.max_content_bytes + 1))
    assert too_long.value.field == "content"
    assert str(settings.max_content_bytes) in str(too_long.value)
    with pytest.raises(ValidationError) as bad_id:
        await aclient.append("s:other", "user", "x")
    assert bad_id.value.field == "session_id"
    with pytest.raises(ValidationError) as bad_k:
        await aclient.context("s", memories=-1)
    assert bad_k.value.field == "memories"
    assert redis_client.dbsize() == 0


@pytest.mark.asyncio
async def test_cold_session_reads_through_and_continues(
    aclient: AsyncMemoryClient, client: MemoryClient, drainer: Drainer
) -> None:
    """After Redis loses a drained session, context() answers from the store and re-warms;
    append continues the seq."""
    for i in range(40):
        await aclient.append("s", "user" if i % 2 else "assistant", f"turn {i}", subject_id="alice")
    assert drainer.flush(timeout_s=30) == 0
    keys = client.keys.session("default", "s")
    client.redis.delete(keys.meta, keys.buffer, keys.recent_ids)

    cold = await aclient.context("s")
    assert cold.from_durable_store
    assert [m.content for m in cold.messages] == [f"turn {i}" for i in range(10, 40)]
    warm = await aclient.context("s")
    assert not warm.from_durable_store
    assert warm.messages == cold.messages
    assert (await aclient.append("s", "user", "after", subject_id="alice")).seq == 41

    assert drainer.flush(timeout_s=30) == 0  # a FLUSHDB loses the WAL too
    client.redis.flushdb()  # an append is the first call after the loss this time
    assert (await aclient.append("s", "user", "after the flush")).seq == 42
    assert [m.seq for m in (await aclient.context("s")).messages][-2:] == [41, 42]


@pytest.mark.asyncio
async def test_async_appends_are_drained_exactly_once(
    aclient: AsyncMemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """Every async append (single, batched, retried) reaches PostgreSQL once, seq 1..n."""
    appended: Appended = {}
    for session in ("a", "b"):
        for i in range(5):
            content = f"{session} single {i}"
            result = await aclient.append(session, "user", content)
            appended[result.message_id] = ("default", session, result.seq, content)
        batch = [{"role": "assistant", "content": f"{session} batch {i}"} for i in range(4)]
        for message, result in zip(batch, await aclient.append_many(session, batch), strict=True):
            appended[result.message_id] = ("default", session, result.seq, message["content"])
        retried = await aclient.append(session, "user", "again", message_id=result.message_id)
        assert retried.duplicate
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(settings.database_url, appended)


@pytest.mark.asyncio
async def test_concurrent_appends_get_distinct_consecutive_seqs(
    aclient: AsyncMemoryClient, drainer: Drainer, settings: Settings
) -> None:
    """asyncio.gather of many appends to one session, cold then warm: seqs 1..n, no repeats."""
    appended: Appended = {}

    async def one(label: str) -> None:
        result = await aclient.append("s", "user", label)
        appended[result.message_id] = ("default", "s", result.seq, label)

    await asyncio.gather(*(one(f"cold {i}") for i in range(40)))  # all find the session cold
    await asyncio.gather(*(one(f"warm {i}") for i in range(60)))
    assert sorted(seq for *_, seq, _ in appended.values()) == list(range(1, 101))
    assert drainer.flush(timeout_s=30) == 0
    assert_exactly_once(settings.database_url, appended)


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@pytest.mark.asyncio
async def test_warm_append_and_context_are_one_evalsha_each(
    settings: Settings, tmp_path: Path
) -> None:
    """P1 on asyncio: INFO commandstats counts one EVALSHA per warm append and per context."""
    # commandstats is server-wide: a private server keeps other clients out of the count.
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    sync = MemoryClient(redis=redis_from_url(server.url()), settings=settings)
    aclient = AsyncMemoryClient(
        redis=redis.asyncio.Redis.from_url(server.url(), decode_responses=True),
        settings=settings,
        sync=sync,
    )
    try:
        for i in range(5):  # a session's first append is the cold path (two calls)
            await aclient.append(f"s-{i}", "user", "opens the pooled connection and the session")
        sync.redis.config_resetstat()
        for i in range(50):
            await aclient.append(f"s-{i % 5}", "user" if i % 2 else "assistant", f"message {i}")
        calls = _commandstats(sync.redis)
        calls.pop("info", None)  # the INFO that reads these counters
        calls.pop("config|resetstat", None)  # the reset itself is counted
        assert calls.pop("evalsha") == 50
        # commandstats also counts the commands a script runs; those are the only others.
        lua_calls = re.findall(r"redis\.call\('(\w+)'", lua_source("append").lower())
        assert set(calls) <= set(lua_calls)
        assert calls["xadd"] == 50

        sync.redis.config_resetstat()
        for i in range(10):
            assert len((await aclient.context(f"s-{i % 5}")).messages) == 11
        calls = _commandstats(sync.redis)
        assert calls["evalsha"] == 10
        assert "xadd" not in calls
    finally:
        await aclient.aclose()
        sync.close()
        server.stop()


@pytest.mark.asyncio
async def test_scripts_reload_after_redis_forgets_them(aclient: AsyncMemoryClient) -> None:
    """After SCRIPT FLUSH (a restarted Redis), the next call reloads the script and succeeds."""
    await aclient.append("s", "user", "before")
    await aclient.redis.script_flush()
    assert (await aclient.append("s", "user", "after")).seq == 2
    assert len((await aclient.context("s")).messages) == 2


@pytest.mark.asyncio
async def test_is_available(
    aclient: AsyncMemoryClient, client: MemoryClient, settings: Settings
) -> None:
    """True against the test Redis; False, without raising, against a port nobody listens on."""
    assert await aclient.is_available()
    dead = AsyncMemoryClient(
        redis=redis.asyncio.Redis(port=free_port(), socket_connect_timeout=0.2),
        settings=settings,
        sync=client,
    )
    assert not await dead.is_available()
    await dead.redis.aclose()  # not close(): the shared sync client stays open


@pytest.mark.asyncio
async def test_other_methods_run_the_sync_ones(
    aclient: AsyncMemoryClient, client: MemoryClient, drainer: Drainer
) -> None:
    """The threaded twins return what the sync methods return."""
    for i in range(3):
        await aclient.append("s", "user", f"turn {i}")
    assert await aclient.memory_stats("s") == client.memory_stats("s")
    page = await aclient.history("s", limit=2)
    assert [m.seq for m in page.messages] == [2, 3]
    assert drainer.flush(timeout_s=30) == 0
    cleared = await aclient.clear_session("s")
    assert cleared.seq_floor == 3
    assert (await aclient.context("s")).messages == []
    memory_id = await aclient.remember("alice", "prefers tea")
    [memory] = await aclient.recall("alice")
    assert (memory.memory_id, memory.content) == (memory_id, "prefers tea")


def test_a_shared_client_takes_no_options_of_its_own(
    client: MemoryClient, settings: Settings, make_settings: object
) -> None:
    """Options for the sync client are refused when one is shared, rather than ignored."""
    with pytest.raises(ConfigurationError, match="enqueue"):
        AsyncMemoryClient(
            redis=async_redis_client(settings),
            settings=settings,
            sync=client,
            enqueue=lambda name, args: None,
        )
    other = settings.model_copy(update={"shards": settings.shards * 2})
    with pytest.raises(ConfigurationError, match="other settings"):
        AsyncMemoryClient(redis=async_redis_client(other), settings=other, sync=client)


@pytest.mark.asyncio
async def test_from_settings_and_async_with(settings: Settings) -> None:
    """from_settings builds both clients from the settings; async with closes them."""
    async with AsyncMemoryClient.from_settings(settings) as memory:
        assert (await memory.append("s", "user", "hello")).seq == 1
        assert [m.content for m in (await memory.context("s")).messages] == ["hello"]
