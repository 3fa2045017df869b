"""MemscribeSaver end to end: compiled LangGraph graphs on real Redis and PostgreSQL, no mocks.

What a graph sees (a thread goes on, its history, time travel; sync and async); what the
drainers make durable (every checkpoint once, its blobs and writes) and what a reader gets when
Redis has forgotten everything (the same tuples, from PostgreSQL); delete_thread (hidden at
once, after the drain, after Redis forgets; purged; a re-used thread starts empty); bad input,
which changes nothing; and the round trips of a put and of a read. The graphs and probes are
in tests/helpers/langgraph_saver.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from sqlalchemy import Engine

from config.settings import Settings
from core.checkpoints import durable
from core.checkpoints.store import CheckpointStore
from core.errors import ValidationError
from core.integrations.langgraph import MemscribeSaver
from core.log.drainer import Drainer
from core.retention.purge import Purge
from core.store.checkpoint_tables import checkpoint_blobs, checkpoint_writes, checkpoints
from core.store.connections import redis_client as redis_for
from core.store.db import make_engine
from tests.conftest import SettingsFactory, both_backends
from tests.helpers.langgraph_saver import (
    FIRST,
    METADATA,
    TENANT,
    PickleNamingSerde,
    a_checkpoint,
    approval_graph,
    as_seen,
    async_saver,
    chat_graph,
    checkpoint_id,
    client_commands,
    drain,
    evalsha_calls,
    queries,
    seen_by,
    stored_ids,
    thread,
    thread_id,
    unchanged,
    with_metadata,
)

TABLES = {"checkpoints": 0, "checkpoint_blobs": 0, "checkpoint_writes": 0}


# --- fixtures ---------------------------------------------------------------


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    """The saver's own engine, so a test can count the queries it sends."""
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


SaverFactory = Callable[..., MemscribeSaver]


@pytest.fixture
def new_saver(settings: Settings, engine: Engine, redis_client: redis.Redis) -> Iterator[Any]:
    """Sync savers (``settings=`` and ``serde=`` optional); their clients closed after."""
    clients: list[redis.Redis] = []

    def build(*, settings: Settings = settings, serde: Any = None) -> MemscribeSaver:
        client = redis_for(settings)
        clients.append(client)
        store = CheckpointStore(redis=client, settings=settings, engine=lambda: engine)
        return MemscribeSaver(store=store, tenant=TENANT, serde=serde)

    yield build
    for client in clients:
        client.close()


# --- a graph on one thread --------------------------------------------------------------


def test_invokes_continue_the_thread(new_saver: SaverFactory, redis_client: redis.Redis) -> None:
    """Each invoke starts from the thread's last state, also in a fresh saver and graph."""
    config = thread()
    graph = chat_graph(new_saver())
    graph.invoke(FIRST, config)
    graph.invoke({"log": ["again"]}, config)
    result = chat_graph(new_saver()).invoke({"log": ["more"]}, config)
    assert result == {
        "log": ["hello", "turn 1", "again", "turn 2", "more", "turn 3"],
        "turns": 3,
        "profile": {"name": "Ada"},
    }


def test_history_is_newest_first_and_chained(
    new_saver: SaverFactory, redis_client: redis.Redis
) -> None:
    """get_state_history: ids and steps descending, each checkpoint's parent the next one."""
    config = thread()
    graph = chat_graph(new_saver())
    for log in ("one", "two", "three"):
        graph.invoke({"log": [log]}, config)
    history = list(graph.get_state_history(config))
    ids = [checkpoint_id(snapshot.config) for snapshot in history]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids) == 9
    assert [snapshot.metadata["step"] for snapshot in history] == list(range(7, -2, -1))
    parents = [snapshot.parent_config for snapshot in history]
    assert [checkpoint_id(parent) for parent in parents[:-1]] == ids[1:]
    assert parents[-1] is None
    assert [len(snapshot.values.get("log", [])) for snapshot in history[:2]] == [6, 5]


def test_time_travel_forks_and_keeps_both_branches(
    new_saver: SaverFactory, redis_client: redis.Redis
) -> None:
    """An invoke from an earlier checkpoint_id starts a branch; both branches stay listable."""
    config = thread()
    graph = chat_graph(new_saver())
    graph.invoke(FIRST, config)
    graph.invoke({"log": ["again"]}, config)
    original = list(graph.get_state_history(config))
    end_of_turn_1 = next(s for s in original if s.values.get("turns") == 1 and not s.next)

    forked = graph.invoke({"log": ["instead"]}, end_of_turn_1.config)
    assert forked["log"] == ["hello", "turn 1", "instead", "turn 2"]
    assert graph.get_state(config).values == forked  # the newest checkpoint is the fork's
    assert graph.get_state(original[0].config).values["log"][-2:] == ["again", "turn 2"]

    original_ids = {checkpoint_id(s.config) for s in original}
    after = list(graph.get_state_history(config))
    assert original_ids <= {checkpoint_id(s.config) for s in after}  # the first branch stays
    fork = [s for s in after if checkpoint_id(s.config) not in original_ids]
    assert len(fork) == 3  # its input, the start, count
    assert checkpoint_id(fork[-1].parent_config) == checkpoint_id(end_of_turn_1.config)


@pytest.mark.asyncio
async def test_async_graph_continues_lists_and_forks(
    settings: Settings, engine: Engine, redis_client: redis.Redis
) -> None:
    """ainvoke, aget_state_history and a fork from an earlier checkpoint, on redis.asyncio."""
    config = thread()
    async with async_saver(settings, engine) as saver:
        graph = chat_graph(saver)
        await graph.ainvoke(FIRST, config)
        result = await graph.ainvoke({"log": ["again"]}, config)
        assert (result["turns"], result["profile"]) == (2, {"name": "Ada"})
        history = [snapshot async for snapshot in graph.aget_state_history(config)]
        ids = [checkpoint_id(snapshot.config) for snapshot in history]
        assert ids == sorted(ids, reverse=True) and len(ids) == 6
        end_of_turn_1 = next(s for s in history if s.values.get("turns") == 1 and not s.next)
        forked = await graph.ainvoke({"log": ["instead"]}, end_of_turn_1.config)
        assert forked["log"] == ["hello", "turn 1", "instead", "turn 2"]
        listed = [checkpoint_id(found.config) async for found in saver.alist(config)]
        assert set(ids) < set(listed) and len(listed) == 9


# --- durability: the drain, and reads once Redis forgot -----------------------------------


def test_drained_checkpoints_are_stored_exactly_once_with_blobs_and_writes(
    new_saver: SaverFactory, redis_client: redis.Redis, drainer: Drainer, engine: Engine
) -> None:
    """After the drain every checkpoint id is in the store once, its blobs and writes too."""
    saver = new_saver()
    chat, paused = thread(), thread("refund")
    for log in ("one", "two"):
        chat_graph(saver).invoke({"log": [log]}, chat)
    approval_graph(saver, []).invoke({"log": ["refund A-17"]}, paused)
    drain(drainer)
    drain(drainer)  # nothing left, nothing twice

    for config in (chat, paused):
        listed = [found for found in saver.list(config)]
        ids = stored_ids(engine, config)
        assert Counter(ids).most_common(1)[0][1] == 1
        assert set(ids) == {checkpoint_id(found.config) for found in listed}
        with engine.connect() as connection:
            named = connection.execute(
                sa.select(checkpoints.c.blobs).where(checkpoints.c.session_id == thread_id(config))
            )
            wanted = {tuple(pair) for (blobs,) in named for pair in blobs}
            held = connection.execute(
                sa.select(checkpoint_blobs.c.channel, checkpoint_blobs.c.version).where(
                    checkpoint_blobs.c.session_id == thread_id(config)
                )
            )
            assert wanted and wanted <= {tuple(row) for row in held}
    pending = saver.get_tuple(paused)
    assert pending is not None
    writes = pending.pending_writes or []
    channels = {channel for _, channel, _ in writes}
    assert {"__interrupt__", "log"} <= channels  # ask's interrupt, fetch's finished writes
    with engine.connect() as connection:
        written = connection.execute(
            sa.select(checkpoint_writes.c.task_id, checkpoint_writes.c.channel).where(
                checkpoint_writes.c.checkpoint_id == checkpoint_id(pending.config)
            )
        )
        assert {tuple(row) for row in written} == {(task, channel) for task, channel, _ in writes}


def test_reads_fall_through_to_the_store_when_redis_forgot(
    new_saver: SaverFactory, redis_client: redis.Redis, drainer: Drainer, engine: Engine
) -> None:
    """After a drain and FLUSHDB, get_tuple and list return what they returned from Redis,
    pending writes and the values of channels unchanged since an earlier checkpoint too."""
    saver = new_saver()
    chat, paused = thread(), thread("refund")
    graph = chat_graph(saver)
    graph.invoke(FIRST, chat)
    graph.invoke({"log": ["again"]}, chat)
    fetched: list[str] = []
    approval_graph(saver, fetched).invoke({"log": ["refund A-17"]}, paused)
    before = {name: seen_by(saver, config) for name, config in (("chat", chat), ("paused", paused))}
    drain(drainer)
    redis_client.flushdb()

    with queries(engine) as sent:
        after = {name: seen_by(saver, c) for name, c in (("chat", chat), ("paused", paused))}
    assert sent  # read through from PostgreSQL
    assert after == before
    newest = saver.get_tuple(chat)
    oldest = list(saver.list(chat))[-2]  # the first checkpoint that holds the profile
    assert newest is not None and newest.checkpoint["channel_values"]["profile"] == {"name": "Ada"}
    versions = (newest.checkpoint["channel_versions"], oldest.checkpoint["channel_versions"])
    assert versions[0]["profile"] == versions[1]["profile"]  # unchanged: the old blob
    assert saver.get_tuple(paused).pending_writes  # type: ignore[union-attr]

    # A graph resumes from the store alone; fetch's pending write is used, not run again.
    resumed = approval_graph(new_saver(), fetched).invoke(Command(resume="yes"), paused)
    assert resumed == {"log": ["refund A-17", "fetched", "approved: yes"], "approved": "yes"}
    assert fetched == ["fetch"]


@pytest.mark.asyncio
async def test_async_reads_fall_through_to_the_store(
    settings: Settings, engine: Engine, redis_client: redis.Redis, drainer: Drainer
) -> None:
    """aget_tuple and alist after a drain and FLUSHDB: the same tuples as before; then
    adelete_thread hides them."""
    config = thread("refund")
    async with async_saver(settings, engine) as saver:
        await approval_graph(saver, []).ainvoke({"log": ["refund"]}, config)
        before = [as_seen(found) async for found in saver.alist(config)]
        newest = await saver.aget_tuple(config)
        drain(drainer)
        redis_client.flushdb()
        assert [as_seen(found) async for found in saver.alist(config)] == before
        again = await saver.aget_tuple(config)
        assert newest is not None and again is not None and as_seen(again) == as_seen(newest)
        assert again.pending_writes
        await saver.adelete_thread(thread_id(config))
        assert await saver.aget_tuple(config) is None
        assert [found async for found in saver.alist(config)] == []


def test_a_channel_versioned_without_a_value_is_stored_and_read_as_absent(
    new_saver: SaverFactory, redis_client: redis.Redis, drainer: Drainer
) -> None:
    """A channel in new_versions but not in channel_values (a consumed trigger) is an EMPTY
    blob: the put is accepted and the channel reads back without a value, from Redis and from
    the store (checkpoint_put.lua once failed on its null value)."""
    saver = new_saver()
    config = thread()
    checkpoint, versions = a_checkpoint(saver, log=["a"])
    versions["branch:to:count"] = saver.get_next_version(None, None)
    checkpoint["channel_versions"]["branch:to:count"] = versions["branch:to:count"]
    stored = saver.put(config, checkpoint, METADATA, versions)
    for forgot in (False, True):
        if forgot:
            drain(drainer)
            redis_client.flushdb()
        found = saver.get_tuple(stored)
        assert found is not None
        assert found.checkpoint["channel_values"] == {"log": ["a"]}
        assert "branch:to:count" in found.checkpoint["channel_versions"]


# --- delete_thread, the purge, and a thread used again -----------------------------------


def test_a_deleted_thread_is_hidden_at_once_after_the_drain_and_after_redis_forgot(
    new_saver: SaverFactory, redis_client: redis.Redis, drainer: Drainer, engine: Engine
) -> None:
    """Hidden before any drain; still hidden once the floor is in the store and Redis forgot."""
    saver = new_saver()
    config = thread()
    graph = chat_graph(saver)
    graph.invoke(FIRST, config)
    drain(drainer)  # the first turn is in the store, the second only in Redis and the WAL
    graph.invoke({"log": ["again"]}, config)

    saver.delete_thread(thread_id(config))
    for moment in ("at once", "after the drain", "after FLUSHDB"):
        if moment == "after the drain":
            drain(drainer)
        elif moment == "after FLUSHDB":
            redis_client.flushdb()
        assert (saver.get_tuple(config), list(saver.list(config))) == (None, []), moment
        assert graph.get_state(config).values == {}, moment
        assert stored_ids(engine, config), moment  # the rows wait for the purge


def test_the_purge_deletes_a_deleted_threads_rows(
    new_saver: SaverFactory,
    redis_client: redis.Redis,
    drainer: Drainer,
    engine: Engine,
    settings: Settings,
) -> None:
    """Purge.run deletes the rows of a thread at or below its delete floor."""
    saver = new_saver()
    config, kept = thread(), thread("kept")
    for each in (config, kept):
        approval_graph(saver, []).invoke({"log": ["refund"]}, each)
    drain(drainer)
    saver.delete_thread(thread_id(config))
    drain(drainer)
    held = durable.count_rows(engine, TENANT, thread_id(kept))
    assert all(held.values())

    Purge(redis=redis_client, engine=engine, settings=settings).run()
    assert durable.count_rows(engine, TENANT, thread_id(config)) == TABLES
    assert durable.count_rows(engine, TENANT, thread_id(kept)) == held


def test_a_thread_used_again_after_its_delete_starts_empty_and_keeps_new_checkpoints(
    new_saver: SaverFactory,
    redis_client: redis.Redis,
    drainer: Drainer,
    engine: Engine,
    settings: Settings,
) -> None:
    """After delete_thread the same thread id starts from nothing; its new checkpoints
    survive the drain, the purge and a FLUSHDB."""
    saver = new_saver()
    config = thread()
    graph = chat_graph(saver)
    graph.invoke(FIRST, config)
    graph.invoke({"log": ["again"]}, config)
    drain(drainer)
    saver.delete_thread(thread_id(config))

    result = graph.invoke({"log": ["fresh"]}, config)
    assert result == {"log": ["fresh", "turn 1"], "turns": 1}
    new_ids = [checkpoint_id(s.config) for s in graph.get_state_history(config)]
    assert len(new_ids) == 3
    drain(drainer)
    Purge(redis=redis_client, engine=engine, settings=settings).run()
    redis_client.flushdb()
    assert graph.get_state(config).values == result
    assert [checkpoint_id(s.config) for s in graph.get_state_history(config)] == new_ids


@both_backends
def test_prune_keeps_the_latest_checkpoint_once_redis_forgot(
    new_saver: SaverFactory, redis_client: redis.Redis, drainer: Drainer
) -> None:
    """prune(keep_latest) of a drained thread: the kept checkpoint is re-put with its ids
    after the delete and replaces its hidden row in the store (it was once skipped there,
    and lost when Redis forgot)."""
    saver = new_saver()
    config = thread()
    graph = chat_graph(saver)
    graph.invoke(FIRST, config)
    graph.invoke({"log": ["again"]}, config)
    latest = graph.get_state(config)
    drain(drainer)
    saver.prune([thread_id(config)])
    drain(drainer)
    redis_client.flushdb()
    listed = list(saver.list(config))
    assert [checkpoint_id(found.config) for found in listed] == [checkpoint_id(latest.config)]
    assert graph.get_state(config).values == latest.values


@both_backends
def test_the_same_checkpoint_put_twice_drains_into_one_row(
    new_saver: SaverFactory, redis_client: redis.Redis, drainer: Drainer, engine: Engine
) -> None:
    """A checkpoint put twice, and a thread copied twice onto one target, drain without a
    dead letter: one row per checkpoint, the first write kept."""
    saver = new_saver()
    config, copy = thread(), thread("copy")
    checkpoint, versions = a_checkpoint(saver, log=["a"])
    for _ in range(2):
        saver.put(config, checkpoint, METADATA, versions)
    for _ in range(2):
        saver.copy_thread(thread_id(config), thread_id(copy))
    drain(drainer)
    assert stored_ids(engine, config) == stored_ids(engine, copy) == [checkpoint["id"]]


# --- bad input changes nothing --------------------------------------------------------------


def test_a_serializer_naming_pickle_is_refused(
    new_saver: SaverFactory, redis_client: redis.Redis, settings: Settings
) -> None:
    """put, put_writes and a graph's invoke raise ValidationError and write nothing."""
    chat_graph(new_saver()).invoke(FIRST, thread())  # something in Redis and the WAL
    saver = new_saver(serde=PickleNamingSerde())
    config = thread()
    checkpoint, versions = a_checkpoint(saver, log=["a"])
    written = {**config["configurable"], "checkpoint_ns": "", "checkpoint_id": checkpoint["id"]}
    attempts: list[Callable[[], Any]] = [
        lambda: saver.put(config, checkpoint, METADATA, versions),
        lambda: saver.put_writes({"configurable": written}, [("log", ["b"])], "task-1"),
        lambda: chat_graph(saver).invoke(FIRST, config),
    ]
    for attempt in attempts:
        with unchanged(settings), pytest.raises(ValidationError, match="pickle") as refused:
            attempt()
        assert refused.value.field in {"type", "checkpoint type"}


@pytest.mark.parametrize(
    "bad", ["", "has space", "-dash-first", "star*", "a/b", "x" * 129, "semi;colon"]
)
def test_a_thread_id_that_is_not_an_id_is_refused(
    new_saver: SaverFactory, redis_client: redis.Redis, settings: Settings, bad: str
) -> None:
    """put, get_tuple and a graph's invoke raise ValidationError naming thread_id."""
    chat_graph(new_saver()).invoke(FIRST, thread())
    saver = new_saver()
    config: RunnableConfig = {"configurable": {"thread_id": bad}}
    checkpoint, versions = a_checkpoint(saver, log=["a"])
    attempts: list[Callable[[], Any]] = [
        lambda: saver.put(config, checkpoint, METADATA, versions),
        lambda: saver.get_tuple(config),
        lambda: chat_graph(saver).invoke(FIRST, config),
    ]
    for attempt in attempts:
        with unchanged(settings), pytest.raises(ValidationError) as refused:
            attempt()
        assert refused.value.field == "thread_id"


def test_an_oversized_checkpoint_or_write_is_refused(
    new_saver: SaverFactory,
    redis_client: redis.Redis,
    settings: Settings,
    make_settings: SettingsFactory,
) -> None:
    """Past checkpoint_max_bytes: ValidationError naming the field and the limit."""
    small = make_settings(database_url=settings.database_url, checkpoint_max_bytes=4096)
    saver = new_saver(settings=small)
    config = thread()
    chat_graph(saver).invoke(FIRST, config)  # small ones pass
    stored = saver.get_tuple(config)
    assert stored is not None
    big = ["x" * 5000]
    checkpoint, versions = a_checkpoint(saver, log=big)
    attempts: list[tuple[str, Callable[[], Any]]] = [
        ("checkpoint", lambda: saver.put(config, checkpoint, METADATA, versions)),
        ("writes", lambda: saver.put_writes(stored.config, [("log", big)], "task-1")),
        # durability="sync": under the default ("async") LangGraph runs the next step while
        # the put is in flight, and that step's writes land although the put is refused.
        ("checkpoint", lambda: chat_graph(saver).invoke({"log": big}, config, durability="sync")),
    ]
    for field, attempt in attempts:
        with unchanged(small), pytest.raises(ValidationError, match="limit is 4096") as refused:
            attempt()
        assert refused.value.field == field


# --- round trips ----------------------------------------------------------------------------


def test_a_warm_put_is_one_evalsha(new_saver: SaverFactory, redis_client: redis.Redis) -> None:
    """put: one command from the client (EVALSHA), one script call in commandstats."""
    saver = new_saver()
    config = thread()
    saver.put(config, *with_metadata(a_checkpoint(saver, log=["warm"])))
    checkpoint, versions = a_checkpoint(saver, log=["a"], turns=1)
    calls = evalsha_calls(redis_client)
    with client_commands(redis_client) as sent:
        saver.put(config, checkpoint, METADATA, versions)
    assert sent == ["EVALSHA"]
    assert evalsha_calls(redis_client) - calls == 1


@pytest.mark.asyncio
async def test_a_warm_aput_is_one_evalsha(
    settings: Settings, engine: Engine, redis_client: redis.Redis
) -> None:
    """aput: the same single EVALSHA once its script is loaded."""
    config = thread()
    async with async_saver(settings, engine) as saver:
        await saver.aput(config, *with_metadata(a_checkpoint(saver, log=["warm"])))
        checkpoint, versions = a_checkpoint(saver, log=["a"], turns=1)
        calls = evalsha_calls(redis_client)
        with client_commands(redis_client) as sent:
            await saver.aput(config, checkpoint, METADATA, versions)
        assert sent == ["EVALSHA"]
        assert evalsha_calls(redis_client) - calls == 1


def test_reading_a_checkpoint_redis_holds_is_one_evalsha_and_no_query(
    new_saver: SaverFactory, redis_client: redis.Redis, engine: Engine
) -> None:
    """get_tuple (the newest, or by id) of a graph's checkpoint in Redis, its blobs written by
    earlier checkpoints: one EVALSHA, no PostgreSQL query."""
    saver = new_saver()
    config = thread()
    graph = chat_graph(saver)
    graph.invoke(FIRST, config)
    graph.invoke({"log": ["again"]}, config)
    newest = saver.get_tuple(config)
    assert newest is not None
    for wanted in (config, newest.config):
        calls = evalsha_calls(redis_client)
        with queries(engine) as statements, client_commands(redis_client) as sent:
            found = saver.get_tuple(wanted)
        assert (sent, statements) == (["EVALSHA"], [])
        assert evalsha_calls(redis_client) - calls == 1
        assert found is not None and as_seen(found) == as_seen(newest)
