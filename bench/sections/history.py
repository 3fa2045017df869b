"""8. Scroll-back: a history() page from the Redis buffer and an older page from the store.

One session of 200 messages, all durable (drained), with the default buffer (the newest 30).
Each repetition times, in alternating chunks on one client: PING; ``history(limit=20)`` of the
newest page, which lies inside the buffer (one EVALSHA of history.lua); and
``history(before_seq=101, limit=20)``, an older page: the same call plus one indexed query of
the messages table.
"""

from __future__ import annotations

import uuid

from bench.context import BenchContext, log
from bench.figures import Figure, Samples
from bench.section import Section
from bench.turns import Call, against_ping, p50s_in_turns
from core.log.drainer import Drainer

MESSAGES = 200
PAGE = 20
OLDER_BEFORE_SEQ = 101


def _seed(ctx: BenchContext, session: str) -> None:
    client = ctx.client
    for i in range(MESSAGES):
        role = "user" if i % 2 == 0 else "assistant"
        client.append(session, role, f"turn {i}: a question about order {1000 + i} and its parcel")
    drainer = Drainer(redis=ctx.redis, engine=ctx.engine, settings=ctx.settings)
    if drainer.flush(timeout_s=300):
        raise RuntimeError("history: the seeded messages did not become durable")


def _calls(ctx: BenchContext, session: str) -> dict[str, Call]:
    client, redis = ctx.client, ctx.redis
    return {
        "ping": lambda _i: redis.ping(),
        "redis_page": lambda _i: client.history(session, limit=PAGE),
        "store_page": lambda _i: client.history(session, before_seq=OLDER_BEFORE_SEQ, limit=PAGE),
    }


def _check(ctx: BenchContext, session: str) -> None:
    """The pages are what the labels say: the newest from Redis, the older from the store."""
    newest = ctx.client.history(session, limit=PAGE)
    older = ctx.client.history(session, before_seq=OLDER_BEFORE_SEQ, limit=PAGE)
    if newest.from_durable_store or not older.from_durable_store:
        raise RuntimeError("history: the newest page must come from Redis, the older one not")
    if [m.seq for m in older.messages] != list(range(OLDER_BEFORE_SEQ - PAGE, OLDER_BEFORE_SEQ)):
        raise RuntimeError("history: the older page is not seqs 81..100")


def run(ctx: BenchContext) -> list[Figure]:
    config = ctx.config
    count = max(50, config.latency_calls // 10)
    samples = Samples()
    for repetition in range(config.repetitions):
        ctx.reset()
        session = f"history-{uuid.uuid4().hex[:6]}"
        _seed(ctx, session)
        _check(ctx, session)
        calls = _calls(ctx, session)
        for key, p50 in p50s_in_turns(calls, count=count, chunk=config.latency_chunk).items():
            samples.add(f"{key}.p50", p50)
        log(
            f"history {repetition + 1}/{config.repetitions}: "
            + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in calls)
        )
    ctx.reset()
    labels = {
        "ping": "Redis PING p50",
        "redis_page": f"history(limit={PAGE}), the newest page (inside the buffer)",
        "store_page": f"history(before_seq={OLDER_BEFORE_SEQ}, limit={PAGE}) (from the store)",
    }
    return against_ping("history", labels, samples)


SECTION = Section(
    key="history",
    title="Scroll-back: history() pages from Redis and from the store",
    run=run,
    notes=(
        "A page inside the buffer is one EVALSHA (history.lua); an older page adds one "
        "query of the messages table on its primary key. 200 drained messages, 20 a page."
    ),
)
