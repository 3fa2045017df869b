"""4. Redis memory per buffered message: what holding a message in Redis until it is durable costs.

With drains paused, ``sessions x n`` messages are appended (n no larger than the buffer window,
so every message is in the buffer and in the WAL), then ``MEMORY USAGE ... SAMPLES 0`` (exact)
of every key memscribe wrote is divided by the messages. Anchors: the content's UTF-8 bytes, and
the same messages as JSON in one Redis list per session (LangChain-style history).
"""

from __future__ import annotations

import json

from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, summarize
from bench.section import Section
from core.log.drainer import Drainer


def _usage(ctx: BenchContext, keys: list[str]) -> int:
    with ctx.redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        sizes: list[int | None] = pipe.execute()
    return sum(size or 0 for size in sizes)


def _repetition(ctx: BenchContext, samples: Samples) -> None:
    workload, client = ctx.workload, ctx.client
    sessions = ctx.config.sessions
    per_session = min(ctx.config.memory_messages_per_session, ctx.settings.buffer_max_messages)
    total = sessions * per_session
    ctx.reset()
    with ctx.drain_paused():
        for i in range(total):
            client.append(workload.session(i), workload.role(i), workload.content(i))
        with ctx.redis.pipeline(transaction=False) as pipe:
            for i in range(total):
                message = {"type": "human", "data": {"content": workload.content(i)}}
                pipe.rpush(f"bench:lc:{workload.session(i)}", json.dumps(message))
            pipe.execute()
        session_keys = [ctx.keys.session("default", workload.session(i)) for i in range(sessions)]
        buffer = _usage(ctx, [keys.buffer for keys in session_keys])
        meta = _usage(ctx, [key for keys in session_keys for key in (keys.meta, keys.recent_ids)])
        wal = _usage(ctx, ctx.keys.all_wals())
        langchain = _usage(ctx, [f"bench:lc:{workload.session(i)}" for i in range(sessions)])
    # Then the drain: the WAL is acked and trimmed, only the buffer window and meta stay.
    drainer = Drainer(redis=ctx.redis, engine=ctx.engine, settings=ctx.settings, consumer="mem")
    if drainer.flush(timeout_s=300):
        raise RuntimeError("redis_memory: the backlog did not drain")
    shard_keys = [
        key
        for shard in range(ctx.settings.shards)
        for key in (ctx.keys.wal(shard), ctx.keys.high_water(shard), ctx.keys.tenant_bytes(shard))
    ]
    after = _usage(
        ctx,
        [key for keys in session_keys for key in (keys.buffer, keys.meta, keys.recent_ids)]
        + shard_keys,
    )
    content = sum(len(workload.content(i).encode()) for i in range(total))
    samples.add("after", after / total)
    samples.add("total", (buffer + meta + wal) / total)
    samples.add("wal", wal / total)
    samples.add("buffer", buffer / total)
    samples.add("meta", meta / total)
    samples.add("content", content / total)
    samples.add("langchain", langchain / total)


def run(ctx: BenchContext) -> list[Figure]:
    samples = Samples()
    for repetition in range(ctx.config.repetitions):
        _repetition(ctx, samples)
        log(
            f"redis memory {repetition + 1}/{ctx.config.repetitions}: "
            f"{samples['total'][-1]:.0f} bytes/message"
        )
    ctx.reset()
    per_message = "bytes/msg"
    return [
        summarize(
            "memory.memscribe.total",
            "memscribe: buffer + WAL stream + meta + recent ids",
            per_message,
            samples["total"],
        ),
        summarize("memory.memscribe.wal", "memscribe: WAL stream", per_message, samples["wal"]),
        summarize("memory.memscribe.buffer", "memscribe: buffer", per_message, samples["buffer"]),
        summarize(
            "memory.memscribe.meta",
            "memscribe: meta hash + recent-ids set (per session, spread)",
            per_message,
            samples["meta"],
        ),
        summarize(
            "memory.langchain", "LangChain-style list (JSON)", per_message, samples["langchain"]
        ),
        summarize("memory.content", "content (UTF-8)", per_message, samples["content"]),
        summarize(
            "memory.memscribe.total_vs_content",
            "memscribe total before the drain / content bytes",
            "x",
            samples.ratio("total", "content"),
            anchor="memory.content",
            target=Target("<=", 2.3),
        ),
        summarize(
            "memory.memscribe.after_drain",
            "memscribe after the drain: buffer + meta + recent ids + what is left of the WAL",
            per_message,
            samples["after"],
        ),
        summarize(
            "memory.memscribe.after_drain_vs_content",
            "memscribe after the drain / content bytes",
            "x",
            samples.ratio("after", "content"),
            anchor="memory.content",
            target=Target("<=", 1.3),
        ),
    ]


SECTION = Section(
    key="redis_memory",
    title="Redis memory per buffered message",
    run=run,
    notes=(
        "Every message is both in its session's buffer and in the WAL (drains paused); "
        "after the drainer acks and trims, only the buffer window stays."
    ),
)
