"""Graphs and probes for tests/integration/test_langgraph_saver.py: two small LangGraph
graphs, a saver on redis.asyncio, and what the tests watch (the commands clients send Redis,
the queries an engine sends, Redis's keys and WALs, the rows the store holds)."""

from __future__ import annotations

import operator
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, TypedDict

import redis
import sqlalchemy as sa
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from sqlalchemy import Engine, event

from config.settings import Settings
from core.checkpoints.store import AsyncCheckpointStore, CheckpointStore
from core.integrations.langgraph import MemscribeSaver
from core.log.drainer import Drainer
from core.store.checkpoint_tables import checkpoints
from core.store.connections import async_redis_client
from core.store.connections import redis_client as redis_for
from core.store.keys import Keys

TENANT = "acme"

# --- graphs -----------------------------------------------------------------------------


class Chat(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    turns: int
    profile: dict[str, str]  # given once: later checkpoints reuse its first blob


def _count(state: Chat) -> Chat:
    turn = state.get("turns", 0) + 1
    return {"turns": turn, "log": [f"turn {turn}"]}


def chat_graph(saver: MemscribeSaver) -> Any:
    builder = StateGraph(Chat)
    builder.add_node("count", _count)
    builder.add_edge(START, "count")
    builder.add_edge("count", END)
    return builder.compile(checkpointer=saver)


class Approval(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    approved: str


def approval_graph(saver: MemscribeSaver, fetched: list[str]) -> Any:
    """fetch and ask run side by side; ask interrupts, so fetch's writes wait as pending
    writes of the checkpoint, beside the interrupt."""

    def fetch(state: Approval) -> Approval:
        fetched.append("fetch")
        return {"log": ["fetched"]}

    def ask(state: Approval) -> Approval:
        return {"approved": interrupt("approve the refund?")}

    def finish(state: Approval) -> Approval:
        return {"log": [f"approved: {state['approved']}"]}

    builder = StateGraph(Approval)
    builder.add_node("fetch", fetch)
    builder.add_node("ask", ask)
    builder.add_node("finish", finish)
    builder.add_edge(START, "fetch")
    builder.add_edge(START, "ask")
    builder.add_edge(["fetch", "ask"], "finish")
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=saver)


FIRST = {"log": ["hello"], "profile": {"name": "Ada"}}

# --- savers and probes --------------------------------------------------------------


@asynccontextmanager
async def async_saver(settings: Settings, engine: Engine) -> AsyncIterator[MemscribeSaver]:
    """A saver with its async store on redis.asyncio, in the running loop."""
    sync_client, aio = redis_for(settings), async_redis_client(settings)
    store = CheckpointStore(redis=sync_client, settings=settings, engine=lambda: engine)
    async_store = AsyncCheckpointStore(redis=aio, settings=settings, engine=lambda: engine)
    try:
        yield MemscribeSaver(store=store, async_store=async_store, tenant=TENANT)
    finally:
        await aio.aclose()
        sync_client.close()


def thread(name: str = "chat") -> RunnableConfig:
    return {"configurable": {"thread_id": f"{name}-{uuid.uuid4().hex[:8]}"}}


def thread_id(config: RunnableConfig) -> str:
    return str(config["configurable"]["thread_id"])


def checkpoint_id(config: RunnableConfig | None) -> str:
    assert config is not None
    return str(config["configurable"]["checkpoint_id"])


def as_seen(found: Any) -> tuple[Any, ...]:
    """A CheckpointTuple as a comparable value."""
    return (
        found.config,
        found.checkpoint,
        found.metadata,
        found.parent_config,
        found.pending_writes,
    )


def seen_by(saver: MemscribeSaver, config: RunnableConfig) -> list[tuple[Any, ...] | None]:
    """What a reader gets of a thread: the list, and get_tuple of the newest and of each id."""
    listed = [as_seen(found) for found in saver.list(config)]
    got = [saver.get_tuple(wanted) for wanted in [config, *(found[0] for found in listed)]]
    return [*listed, *(None if found is None else as_seen(found) for found in got)]


def drain(drainer: Drainer) -> None:
    report = drainer.drain_all()
    assert (report.error, report.dead_lettered) == (None, 0)
    assert sum(status.backlog for status in drainer.status()) == 0


def stored_ids(engine: Engine, config: RunnableConfig) -> list[str]:
    """Checkpoint ids the store holds of a thread, hidden or not, one per row."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(checkpoints.c.checkpoint_id).where(
                (checkpoints.c.tenant == TENANT) & (checkpoints.c.session_id == thread_id(config))
            )
        )
        return [row.checkpoint_id for row in rows]


def redis_snapshot(settings: Settings) -> tuple[dict[int, int], dict[bytes, bytes | None]]:
    """Every shard's WAL length, and every key with its serialized value."""
    raw = redis.Redis.from_url(settings.redis_url)  # bytes: DUMP is binary
    keys = Keys.of(settings)
    try:
        lengths = {shard: raw.xlen(keys.wal(shard)) for shard in range(settings.shards)}
        values = {key: raw.dump(key) for key in raw.scan_iter(count=1000)}
    finally:
        raw.close()
    return lengths, values


@contextmanager
def unchanged(settings: Settings) -> Iterator[None]:
    """The block leaves the WALs and every Redis key as they were."""
    before = redis_snapshot(settings)
    yield
    assert redis_snapshot(settings) == before


@contextmanager
def client_commands(client: redis.Redis) -> Iterator[list[str]]:
    """The commands clients send Redis in the block, as MONITOR sees them: the calls a script
    makes inside its EVALSHA are left out (commandstats counts them too, so it cannot tell
    one round trip from several)."""
    sent: list[str] = []
    marker = f"end-{uuid.uuid4().hex}"
    # Its own connection, made before the block: its handshake is not in what is seen.
    ender = redis.Redis(connection_pool=redis.ConnectionPool.from_url(client_url(client)))
    ender.ping()
    try:
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            yield sent
            ender.echo(marker)
            while marker not in (found := monitor.next_command())["command"]:
                if found["client_type"] != "lua":
                    sent.append(found["command"].split(" ", 1)[0].upper())
    finally:
        ender.close()


def client_url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats")["cmdstat_evalsha"]["calls"])


@contextmanager
def queries(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements the engine sends in the block."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def a_checkpoint(saver: MemscribeSaver, **values: Any) -> tuple[Checkpoint, ChannelVersions]:
    """A new checkpoint with ``values``, every channel at a new version."""
    checkpoint = empty_checkpoint()
    versions: ChannelVersions = {channel: saver.get_next_version(None, None) for channel in values}
    checkpoint["channel_values"] = dict(values)
    checkpoint["channel_versions"] = dict(versions)
    return checkpoint, versions


METADATA: Any = {"source": "input", "step": -1, "parents": {}}


def with_metadata(made: tuple[Checkpoint, ChannelVersions]) -> tuple[Any, ...]:
    checkpoint, versions = made
    return checkpoint, METADATA, versions


class PickleNamingSerde(JsonPlusSerializer):
    """A serializer that names its values "pickle" (their bytes are harmless msgpack)."""

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        return "pickle", super().dumps_typed(obj)[1]
