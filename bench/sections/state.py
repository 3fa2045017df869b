"""10. Conversation state: a patch against an append, and reads from each level.

On one client, in alternating chunks: PING; ``append`` (the anchor of the write path);
``save()`` of a state with one field changed (one EVALSHA of state_patch.lua);
``update_state`` of a counter (one EVALSHA when the local copy is current, as it is for the
process that wrote last); ``state()`` served by the local level (one EVALSHA that confirms
the local version, the fields are not moved); ``state()`` from Redis (the local level dropped
first, so the fields travel and are decoded). No worker runs: the WAL only grows.
"""

from __future__ import annotations

import uuid

from bench.context import BenchContext, log
from bench.figures import Figure, Samples, summarize
from bench.section import Section
from bench.turns import Call, against_ping, p50s_in_turns

CONTEXT = {f"fact-{i}": f"the user prefers option {i} for deliveries" for i in range(20)}


def _calls(ctx: BenchContext, session: str) -> dict[str, Call]:
    client, redis = ctx.client, ctx.redis
    state = client.state(session)
    state.context = dict(CONTEXT)
    state.data = {"n": 0, "plan": "gold"}
    state.save()

    def save(i: int) -> None:
        state.temp["step"] = i
        state.save()

    def read_redis(_i: int) -> None:
        client._state.local.clear()
        client.state(session)

    return {
        "ping": lambda _i: redis.ping(),
        "append": lambda i: client.append(f"{session}-log", "user", f"message {i} of the log"),
        "save": save,
        "update": lambda _i: client.update_state(
            f"{session}-counter", lambda d: {**d, "n": d.get("n", 0) + 1}
        ),
        "read_local": lambda _i: client.state(session),
        "read_redis": read_redis,
    }


def run(ctx: BenchContext) -> list[Figure]:
    config = ctx.config
    count = max(100, config.latency_calls // 5)
    samples = Samples()
    for repetition in range(config.repetitions):
        ctx.reset()
        calls = _calls(ctx, f"state-{uuid.uuid4().hex[:6]}")
        for key, p50 in p50s_in_turns(calls, count=count, chunk=config.latency_chunk).items():
            samples.add(f"{key}.p50", p50)
        log(
            f"state {repetition + 1}/{config.repetitions}: "
            + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in calls)
        )
    ctx.reset()
    labels = {
        "ping": "Redis PING p50",
        "append": "append() (the write path's anchor)",
        "save": "state.save() of one changed field",
        "update": "update_state() of a counter",
        "read_local": "state() from the local level (version confirmed in Redis)",
        "read_redis": "state() from Redis (local level dropped)",
    }
    figures = against_ping("state", labels, samples)
    for key in ("save", "update"):
        figures.append(
            summarize(
                f"state.{key}.p50_vs_append",
                f"{labels[key]}: p50 / append p50",
                "x",
                samples.ratio(f"{key}.p50", "append.p50"),
                anchor="state.append.p50",
            )
        )
    return figures


SECTION = Section(
    key="state",
    title="Conversation state: a patch against an append, reads per level",
    run=run,
    notes=(
        "Every call is one EVALSHA. The seed's own figures (27k sets/s and 180k gets/s in "
        "memory, read p95 < 5 ms, write p95 < 10 ms) were measured on another machine."
    ),
)
