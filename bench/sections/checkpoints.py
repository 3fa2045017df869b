"""16. LangGraph checkpoints (core/checkpoints): ``MemscribeSaver.put`` beside the savers an app
would use instead, in the same rounds.

- memscribe: ``put`` (one EVALSHA of checkpoint_put.lua, which also appends to the thread's WAL
  shard; durable once a drainer has run, and none runs here), ``aput`` (the same on
  redis.asyncio) and ``_prepare_put`` alone (serialization and checks, no I/O); the script's
  own time inside Redis from ``INFO commandstats`` (not on a cluster).
- ``PostgresSaver.put`` (langgraph-checkpoint-postgres, psycopg 3, ``from_conn_string`` and
  ``setup()``, a database of its own on the bench's PostgreSQL): the changed blobs and the
  checkpoint row in one pipeline, autocommit, durable when it returns.
- ``SqliteSaver.put`` (langgraph-checkpoint-sqlite): a file on disk under ``var/bench``
  (``check_same_thread=False``; ``setup()`` turns on WAL mode, Python's sqlite3 keeps
  ``synchronous=FULL``): one ``INSERT OR REPLACE`` of the whole checkpoint, committed.
- the floor: ``PING`` on the memscribe saver's own connection pool.

The checkpoint is what a chat agent's graph writes (the shape langgraph 1.x's loop gives
``put``): a ``messages`` channel of LangChain messages, ~200 characters each, 6 at a thread's
first put and 2 more every step (10 on average over a thread's 5 steps), a counter and a user
id (primitives, kept inline), ``__start__`` and the ``branch:to:agent`` trigger versioned
without a value, ``versions_seen`` per node.
Every put is the next step of a thread: its config names the parent checkpoint, and
``new_versions`` only the channels that step changed, versioned by that saver's own
``get_next_version``. The inputs are built before the clock starts; each round runs every
variant once, in the order given on even rounds and reversed on odd ones. Then ``get_tuple``
of each saver's last thread (latest), in rounds likewise, after checking that every saver
hands back what it was given.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from random import Random
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.base.id import uuid6
from redis import Redis
from sqlalchemy.engine import make_url

from bench import stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, percentile, summarize
from bench.section import Section
from core.integrations.langgraph import MemscribeSaver
from core.store.connections import is_cluster

STEPS_PER_THREAD = 5
FIRST_MESSAGES = 6
MESSAGE_CHARS = 200
CHECKPOINT_FORMAT = 4  # the "v" langgraph 1.x's loop writes
TENANT = "bench"
_VOCABULARY = (
    "order shipped tracking refund invoice address customer agent warehouse delivery weekend "
    "courier parcel delayed replacement account billing subscription upgrade plan support "
    "ticket escalated confirmed schedule window morning evening receipt payment card"
)
_WORDS = _VOCABULARY.split()

Timer = Callable[[int], int]  # put number -> nanoseconds it took


@dataclass(frozen=True)
class Put:
    """One step of a thread, as LangGraph hands it to ``put``."""

    config: RunnableConfig
    checkpoint: Checkpoint
    metadata: CheckpointMetadata
    new_versions: ChannelVersions


def _text(rng: Random, prefix: str) -> str:
    words = [prefix]
    while sum(len(word) + 1 for word in words) < MESSAGE_CHARS:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:MESSAGE_CHARS]


def conversation(seed: int) -> list[BaseMessage]:
    """A thread's messages at its last step: user and agent turns, ids as add_messages sets."""
    rng = Random(seed)
    total = FIRST_MESSAGES + 2 * (STEPS_PER_THREAD - 1)
    return [
        (HumanMessage if i % 2 == 0 else AIMessage)(
            content=_text(rng, f"[{seed}.{i}]"), id=str(uuid.UUID(int=rng.getrandbits(128)))
        )
        for i in range(total)
    ]


def script(
    saver: BaseCheckpointSaver[Any], *, prefix: str, threads: int, messages: list[list[BaseMessage]]
) -> list[Put]:
    """``threads`` threads of ``STEPS_PER_THREAD`` puts each, thread after thread."""
    puts: list[Put] = []
    for n in range(threads):
        thread_id = f"{prefix}-{n}"
        versions: ChannelVersions = {}
        seen: dict[str, ChannelVersions] = {"__input__": {}}
        parent: str | None = None
        for step in range(STEPS_PER_THREAD):
            changed = ["messages", "turn", "branch:to:agent"]
            if step == 0:
                changed += ["__start__", "user"]
            # One new version a step, from the newest, for every channel it wrote (the loop's way).
            version = saver.get_next_version(max(versions.values(), default=None), None)
            if step > 0:  # the agent ran on the trigger the step before wrote
                seen["agent"] = {"branch:to:agent": versions["branch:to:agent"]}
            for channel in changed:
                versions[channel] = version
            seen["__start__"] = {"__start__": versions["__start__"]}
            checkpoint = Checkpoint(
                v=CHECKPOINT_FORMAT,
                id=str(uuid6(clock_seq=step)),
                ts=datetime.now(UTC).isoformat(),
                channel_values={
                    "messages": messages[n % len(messages)][: FIRST_MESSAGES + 2 * step],
                    "turn": step + 1,
                    "user": f"user-{n}",
                },
                channel_versions=dict(versions),
                versions_seen={node: dict(seen_) for node, seen_ in seen.items()},
                updated_channels=sorted(changed),
            )
            configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
            if parent is not None:
                configurable["checkpoint_id"] = parent
            puts.append(
                Put(
                    config={"configurable": configurable},
                    checkpoint=checkpoint,
                    metadata={"source": "loop", "step": step, "parents": {}},
                    new_versions={channel: version for channel in changed},
                )
            )
            parent = checkpoint["id"]
    return puts


def latest(put: Put) -> RunnableConfig:
    """The config that asks for the newest checkpoint of ``put``'s thread."""
    return {"configurable": {"thread_id": put.config["configurable"]["thread_id"]}}


def exact(put: Put) -> RunnableConfig:
    """The config that asks for ``put``'s own checkpoint."""
    thread = put.config["configurable"]["thread_id"]
    return {"configurable": {"thread_id": thread, "checkpoint_id": put.checkpoint["id"]}}


def check(name: str, found: CheckpointTuple | None, put: Put) -> None:
    """``found`` is ``put``'s checkpoint, parent and channel values, or the section fails."""
    want = put.checkpoint
    parent = put.config["configurable"].get("checkpoint_id")
    problem = ""
    if found is None:
        problem = "nothing"
    elif found.checkpoint["id"] != want["id"]:
        problem = f"checkpoint {found.checkpoint['id']}, not {want['id']}"
    elif (found.parent_config or {}).get("configurable", {}).get("checkpoint_id") != parent:
        problem = f"parent {found.parent_config}, not {parent}"
    elif found.checkpoint["channel_values"] != want["channel_values"]:
        got = found.checkpoint["channel_values"]
        problem = (
            f"channels {sorted(got)} with {len(got.get('messages', []))} messages, not "
            f"{sorted(want['channel_values'])} with {len(want['channel_values']['messages'])}"
        )
    elif found.metadata.get("step") != put.metadata["step"]:
        problem = f"metadata {found.metadata}"
    if problem:
        raise stores.BenchError(f"checkpoints: {name} read back {problem}")


def _sync(call: Callable[[int], object]) -> Timer:
    clock = time.perf_counter_ns

    def timer(i: int) -> int:
        began = clock()
        call(i)
        return clock() - began

    return timer


def _async(runner: asyncio.Runner, call: Callable[[int], Awaitable[object]]) -> Timer:
    clock = time.perf_counter_ns

    async def timed(i: int) -> int:
        # Only the await is timed, not the runner's scheduling of the task around it.
        began = clock()
        await call(i)
        return clock() - began

    return lambda i: runner.run(timed(i))


def rounds(timers: dict[str, Timer], *, count: int, skip: int = 0) -> dict[str, list[float]]:
    """Every timer for ``0..count-1``, one call each a round, in the order given on even
    rounds and reversed on odd ones; sorted times (us) of all but the first ``skip``."""
    order = list(timers)
    times: dict[str, list[float]] = {key: [] for key in order}
    for i in range(count):
        for key in order if i % 2 == 0 else reversed(order):
            took = timers[key](i)
            if i >= skip:
                times[key].append(took / 1000)
    return {key: sorted(values) for key, values in times.items()}


@contextmanager
def anchors(ctx: BenchContext) -> Iterator[tuple[dict[str, BaseCheckpointSaver[Any]], list[str]]]:
    """The anchor savers the ``bench`` extra provides, set up on stores of their own, and the
    names of those it lacks."""
    savers: dict[str, BaseCheckpointSaver[Any]] = {}
    missing: list[str] = []
    with ExitStack() as stack:
        try:
            from langgraph.checkpoint.postgres import PostgresSaver
        except ImportError:
            missing.append("langgraph-checkpoint-postgres")
        else:
            server = ctx.stores.database_url
            name = f"{make_url(server).database}_langgraph"
            url = stores.fresh_database(server, name)
            stack.callback(stores.drop_database, server, name)
            postgres = stack.enter_context(PostgresSaver.from_conn_string(stores.libpq_url(url)))
            postgres.setup()
            savers["postgres"] = postgres
        try:
            from langgraph.checkpoint.sqlite import SqliteSaver
        except ImportError:
            missing.append("langgraph-checkpoint-sqlite")
        else:
            directory = ctx.log_dir / "checkpoints-sqlite"
            shutil.rmtree(directory, ignore_errors=True)  # a killed run's file
            directory.mkdir(parents=True)
            stack.callback(shutil.rmtree, directory, ignore_errors=True)
            connection = sqlite3.connect(directory / "checkpoints.sqlite", check_same_thread=False)
            stack.callback(connection.close)
            sqlite = SqliteSaver(connection)
            sqlite.setup()
            savers["sqlite"] = sqlite
        yield savers, missing


def _close(saver: MemscribeSaver, runner: asyncio.Runner) -> None:
    saver.store.redis.close()
    runner.run(saver._async().redis.aclose())
    saver.store._engine().dispose()


def run(ctx: BenchContext) -> list[Figure]:
    config = ctx.config
    threads = -(-max(100, config.latency_calls // 10) // STEPS_PER_THREAD)
    count = threads * STEPS_PER_THREAD
    get_count = max(50, count // 4)
    messages = [conversation(seed) for seed in range(64)]
    samples = Samples()
    saver = MemscribeSaver.from_settings(ctx.settings, tenant=TENANT)
    runner = asyncio.Runner()
    try:
        with anchors(ctx) as (others, missing):
            if missing:
                log(f"checkpoints: {', '.join(missing)} not installed; memscribe alone")
            for repetition in range(config.repetitions):
                _repetition(
                    ctx,
                    saver=saver,
                    runner=runner,
                    others=others,
                    samples=samples,
                    prefix=f"r{repetition}-{uuid.uuid4().hex[:6]}",
                    threads=threads,
                    messages=messages,
                    get_count=get_count,
                )
                log(
                    f"checkpoints {repetition + 1}/{config.repetitions}: put p50 "
                    + ", ".join(
                        f"{key} {samples[f'{key}.put.p50'][-1]:.0f}us"
                        for key in ("memscribe", "memscribe_async", *others)
                    )
                    + f", PING {samples['ping.p50'][-1]:.0f}us"
                )
    finally:
        _close(saver, runner)
        runner.close()
        ctx.reset()
    return figures(samples, anchored=list(others), missing=missing, count=count)


def _repetition(
    ctx: BenchContext,
    *,
    saver: MemscribeSaver,
    runner: asyncio.Runner,
    others: dict[str, BaseCheckpointSaver[Any]],
    samples: Samples,
    prefix: str,
    threads: int,
    messages: list[list[BaseMessage]],
    get_count: int,
) -> None:
    ctx.reset()  # the WAL only grows while no worker runs: each repetition starts empty
    # One thread more than timed: the first round of every variant warms its connection.
    planned = threads + 1
    scripts = {
        "memscribe": script(saver, prefix=f"{prefix}-sync", threads=planned, messages=messages),
        "memscribe_async": script(
            saver, prefix=f"{prefix}-async", threads=planned, messages=messages
        ),
        **{
            key: script(other, prefix=prefix, threads=planned, messages=messages)
            for key, other in others.items()
        },
    }
    ours = scripts["memscribe"]
    ping = saver.store.redis.ping
    timers: dict[str, Timer] = {
        "ping": _sync(lambda _i: ping()),
        "memscribe": _sync(lambda i: saver.put(*_args(ours[i]))),
        "memscribe_async": _async(
            runner, lambda i: saver.aput(*_args(scripts["memscribe_async"][i]))
        ),
        "prepare": _sync(lambda i: saver._prepare_put(*_args(ours[i]))),
        **{key: _put_timer(other, scripts[key]) for key, other in others.items()},
    }
    before = _evalsha_stats(saver.store.redis)
    times = rounds(timers, count=len(ours), skip=STEPS_PER_THREAD)
    after = _evalsha_stats(saver.store.redis)
    if before is not None and after is not None and after[0] > before[0]:
        # Only checkpoint_put.lua runs EVALSHA in these rounds (sync and async puts alike).
        samples.add("script_us", (after[1] - before[1]) / (after[0] - before[0]))
    samples.add("ping.p50", percentile(times["ping"], 50))
    samples.add("prepare.p50", percentile(times["prepare"], 50))
    for key in ("memscribe", "memscribe_async", *others):
        samples.add(f"{key}.put.p50", percentile(times[key], 50))
        samples.add(f"{key}.put.p99", percentile(times[key], 99))

    # Before any read is timed: every saver hands back its last checkpoint and that one's parent.
    check("memscribe", saver.get_tuple(latest(ours[-1])), ours[-1])
    check("memscribe", saver.get_tuple(exact(ours[-2])), ours[-2])
    last_async = scripts["memscribe_async"][-1]
    check("memscribe (async)", runner.run(saver.aget_tuple(latest(last_async))), last_async)
    for key, other in others.items():
        check(key, other.get_tuple(latest(scripts[key][-1])), scripts[key][-1])
        check(key, other.get_tuple(exact(scripts[key][-2])), scripts[key][-2])
    timed = ours[STEPS_PER_THREAD:]
    sizes = [
        len(saver.serde.dumps_typed(p.checkpoint["channel_values"]["messages"])[1]) for p in timed
    ]
    samples.add("messages_bytes", sum(sizes) / len(sizes))

    readers = {"memscribe": saver, **others}
    gets = rounds(
        {key: _get_timer(reader, latest(scripts[key][-1])) for key, reader in readers.items()},
        count=get_count,
        skip=1,
    )
    for key in readers:
        samples.add(f"{key}.get.p50", percentile(gets[key], 50))


def _evalsha_stats(redis: Redis) -> tuple[int, int] | None:
    """EVALSHA's calls and microseconds inside Redis so far (INFO commandstats); None on a
    cluster, whose nodes count apart."""
    if is_cluster(redis):
        return None
    stats = redis.info("commandstats").get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    return int(stats["calls"]), int(stats["usec"])


def _args(put: Put) -> tuple[RunnableConfig, Checkpoint, CheckpointMetadata, ChannelVersions]:
    return put.config, put.checkpoint, put.metadata, put.new_versions


def _put_timer(saver: BaseCheckpointSaver[Any], puts: list[Put]) -> Timer:
    return _sync(lambda i: saver.put(*_args(puts[i])))


def _get_timer(saver: BaseCheckpointSaver[Any], config: RunnableConfig) -> Timer:
    return _sync(lambda _i: saver.get_tuple(config))


LABELS = {
    "memscribe": "MemscribeSaver.put (one EVALSHA, write-behind)",
    "memscribe_async": "MemscribeSaver.aput (redis.asyncio)",
    "postgres": "PostgresSaver.put (langgraph-checkpoint-postgres, committed)",
    "sqlite": "SqliteSaver.put (langgraph-checkpoint-sqlite, a file, WAL mode)",
}
NAMES = {
    "memscribe": "MemscribeSaver",
    "memscribe_async": "MemscribeSaver (async)",
    "postgres": "PostgresSaver",
    "sqlite": "SqliteSaver",
}


def figures(
    samples: Samples, *, anchored: list[str], missing: list[str], count: int
) -> list[Figure]:
    """Figure names are ``checkpoints.`` and the sample's name."""

    def figure(name: str, label: str, unit: str, **extra: Any) -> Figure:
        return summarize(f"checkpoints.{name}", label, unit, samples[name], **extra)

    def ratio(numerator: str, denominator: str, label: str) -> Figure:
        return summarize(
            f"checkpoints.{numerator}_vs_{denominator.split('.')[0]}",
            label,
            "x",
            samples.ratio(numerator, denominator),
            anchor=f"checkpoints.{denominator}",
        )

    absent = f"{', '.join(missing)} not installed (the bench extra): no anchor" if missing else ""
    result = [figure("ping.p50", "Redis PING (the saver's own pool): p50", "us")]
    for key in ("memscribe", "memscribe_async", *anchored):
        note = absent if key == "memscribe" else ""
        result.append(figure(f"{key}.put.p50", f"{LABELS[key]}: p50", "us", note=note))
        result.append(figure(f"{key}.put.p99", f"{LABELS[key]}: p99", "us"))
    result.append(
        figure(
            "prepare.p50", "MemscribeSaver._prepare_put alone (serde, checks; no I/O): p50", "us"
        )
    )
    result.append(ratio("prepare.p50", "memscribe.put.p50", "_prepare_put p50 / put p50"))
    if "script_us" in samples.values:
        label = "checkpoint_put.lua inside Redis (INFO commandstats), mean per put"
        result.append(figure("script_us", label, "us"))
    for key in anchored:
        label = f"MemscribeSaver.put p50 / {NAMES[key]}.put p50"
        result.append(ratio("memscribe.put.p50", f"{key}.put.p50", label))
    result.append(ratio("memscribe.put.p50", "ping.p50", "MemscribeSaver.put p50 / PING p50"))
    result.append(
        ratio("memscribe_async.put.p50", "ping.p50", "MemscribeSaver.aput p50 / PING p50")
    )
    for key in ("memscribe", *anchored):
        result.append(figure(f"{key}.get.p50", f"{NAMES[key]}.get_tuple (latest): p50", "us"))
    result.append(
        figure("messages_bytes", f"messages channel serialized, mean of {count} puts", "bytes")
    )
    return result


SECTION = Section(
    key="checkpoints",
    title="LangGraph checkpoints: MemscribeSaver.put beside PostgresSaver and SqliteSaver",
    run=run,
    notes=(
        "Same checkpoints for every saver (a messages channel of ~200-character LangChain "
        "messages, 10 on average, 2 more a step; new_versions names only the changed "
        "channels; each config names its parent). Rounds interleave the savers, alternating "
        "their order. memscribe's put is durable only once a drainer has run (none runs "
        "here); PostgresSaver's is committed when it returns, SqliteSaver's is committed to a "
        "file on disk (WAL mode, synchronous=FULL). langgraph-checkpoint-redis is absent: it "
        "needs the RedisJSON and RediSearch modules. Every saver's last two checkpoints are "
        "read back and compared before reads are timed. Without the bench extra only "
        "memscribe's figures appear."
    ),
)
