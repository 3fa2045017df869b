"""1b. Appends to sessions Redis does not hold: forgotten ones and brand-new ones.

A forgotten session (durable, its Redis keys gone: expired, flushed, a restart without AOF)
costs one EVALSHA that finds it missing, one durable read (its last seq, summary, recent
buffer and settings) and a second EVALSHA that restores it and appends. A brand-new session
costs the same, with a durable read that finds nothing: only the store can tell the two apart.
Each repetition times PING, forgotten and brand-new appends in alternating chunks on one
client; ratios are taken within the repetition.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from bench.context import BenchContext, log
from bench.figures import Figure, Samples, percentile, summarize
from bench.section import Section
from bench.sections.append_latency import timed
from core.log.drainer import Drainer

MESSAGES_PER_SESSION = 4


def _forget(ctx: BenchContext, sessions: list[str]) -> None:
    """Make ``sessions`` durable, then drop their Redis keys (what a TTL does)."""
    client, workload = ctx.client, ctx.workload
    for number, session in enumerate(sessions):
        for i in range(MESSAGES_PER_SESSION):
            client.append(session, workload.role(i), workload.content(number + i))
    drainer = Drainer(redis=ctx.redis, engine=ctx.engine, settings=ctx.settings)
    if drainer.flush(timeout_s=300):
        raise RuntimeError("append_cold: the forgotten sessions did not become durable")
    with ctx.redis.pipeline(transaction=False) as pipe:
        for session in sessions:
            pipe.delete(*ctx.keys.session("default", session).own())
        pipe.execute()


def _appender(ctx: BenchContext, sessions: list[str]) -> Callable[[int], object]:
    client, workload = ctx.client, ctx.workload
    return lambda i: client.append(sessions[i], "user", workload.content(i))


def run(ctx: BenchContext) -> list[Figure]:
    config, redis = ctx.config, ctx.redis
    count = max(50, config.latency_calls // 10)
    samples = Samples()
    for repetition in range(config.repetitions):
        ctx.reset()
        tag = uuid.uuid4().hex[:6]
        forgotten = [f"cold-{tag}-{i}" for i in range(count)]
        fresh = [f"new-{tag}-{i}" for i in range(count)]
        _forget(ctx, forgotten)
        calls = {
            "ping": lambda _i: redis.ping(),
            "forgotten": _appender(ctx, forgotten),
            "new": _appender(ctx, fresh),
        }
        timings: dict[str, list[int]] = {key: [] for key in calls}
        chunk = config.latency_chunk
        for first in range(0, count, chunk):
            for key, call in calls.items():
                timed(call, first, min(chunk, count - first), timings[key])
        for key, values in timings.items():
            samples.add(f"{key}.p50", percentile(sorted(values), 50.0) / 1000)
        log(
            f"append cold {repetition + 1}/{config.repetitions}: "
            + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in calls)
        )
    ctx.reset()
    figures = [summarize("append_cold.ping.p50", "Redis PING p50", "us", samples["ping.p50"])]
    for key, label in (("forgotten", "forgotten session"), ("new", "brand-new session")):
        figures.append(
            summarize(
                f"append_cold.{key}.p50", f"append to a {label}: p50", "us", samples[f"{key}.p50"]
            )
        )
        figures.append(
            summarize(
                f"append_cold.{key}.p50_vs_ping",
                f"append to a {label}: p50 / PING p50",
                "x",
                samples.ratio(f"{key}.p50", "ping.p50"),
                anchor="append_cold.ping.p50",
            )
        )
    return figures


SECTION = Section(
    key="append_cold",
    title="Append to sessions Redis does not hold (forgotten, brand-new)",
    run=run,
    notes=(
        "Two EVALSHAs and one durable read each (PostgreSQL in the bench). The warm append, "
        "one EVALSHA, is in append_latency."
    ),
)
