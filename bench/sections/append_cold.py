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
from bench.figures import Figure, Samples
from bench.section import Section
from bench.turns import against_ping, p50s_in_turns
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
        for key, p50 in p50s_in_turns(calls, count=count, chunk=config.latency_chunk).items():
            samples.add(f"{key}.p50", p50)
        log(
            f"append cold {repetition + 1}/{config.repetitions}: "
            + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in calls)
        )
    ctx.reset()
    labels = {
        "ping": "Redis PING p50",
        "forgotten": "append to a forgotten session",
        "new": "append to a brand-new session",
    }
    return against_ping("append_cold", labels, samples)


SECTION = Section(
    key="append_cold",
    title="Append to sessions Redis does not hold (forgotten, brand-new)",
    run=run,
    notes=(
        "Two EVALSHAs and one durable read each (PostgreSQL in the bench). The warm append, "
        "one EVALSHA, is in append_latency."
    ),
)
