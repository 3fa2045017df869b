"""7. Long-term memories: remember, recall and context(memories=k) for a subject with 1,000.

One subject holds 1,000 memories (a drained, warm view). Each repetition times, in
alternating chunks on one client: PING; ``remember`` of a new memory (one EVALSHA);
``recall`` without a query and with one (k=10: one pipelined read of the view, ranking in
process, one EVALSHA counting the access); and ``context(session)`` beside
``context(session, memories=5)`` for a session of that subject: the memories live in the
subject's own slot, so they cost the recall's two calls on top of the context's one.
"""

from __future__ import annotations

import uuid

from bench.context import BenchContext, log
from bench.figures import Figure, Samples
from bench.section import Section
from bench.turns import Call, against_ping, p50s_in_turns
from core.log.drainer import Drainer

MEMORIES = 1000
TOPICS = ("tea", "trains", "jazz", "hiking", "python", "lisbon", "cats", "chess", "sushi", "yoga")


def _seed(ctx: BenchContext, subject: str) -> None:
    client = ctx.client
    for i in range(MEMORIES):
        topic = TOPICS[i % len(TOPICS)]
        client.remember(
            subject,
            f"The user mentioned {topic} on day {i}: detail {i * 7919 % 1000} about {topic}",
            priority=("LOW", "MEDIUM", "HIGH", "CRITICAL")[i % 4],
            tags=[topic],
        )
    drainer = Drainer(redis=ctx.redis, engine=ctx.engine, settings=ctx.settings)
    if drainer.flush(timeout_s=300):
        raise RuntimeError("memories: the seeded memories did not become durable")


def _calls(ctx: BenchContext, subject: str, other: str, session: str) -> dict[str, Call]:
    client, redis = ctx.client, ctx.redis
    return {
        "ping": lambda _i: redis.ping(),
        "remember": lambda i: client.remember(other, f"new fact {i} about cats"),
        "recall": lambda _i: client.recall(subject, k=10),
        "recall_query": lambda _i: client.recall(subject, query="jazz on day 42", k=10),
        "context": lambda _i: client.context(session),
        "context_memories": lambda _i: client.context(session, memories=5),
    }


def run(ctx: BenchContext) -> list[Figure]:
    config, client = ctx.config, ctx.client
    count = max(50, config.latency_calls // 10)
    samples = Samples()
    for repetition in range(config.repetitions):
        ctx.reset()
        subject = f"subject-{uuid.uuid4().hex[:6]}"
        session = f"chat-{subject}"
        _seed(ctx, subject)
        client.append(session, "user", "any tips for a trip to lisbon?", subject_id=subject)
        # remember is timed on another (warm) subject, so the recalled one stays at 1,000.
        other = f"{subject}-other"
        client.remember(other, "warms the other subject's view")
        calls = _calls(ctx, subject, other, session)
        for key, p50 in p50s_in_turns(calls, count=count, chunk=config.latency_chunk).items():
            samples.add(f"{key}.p50", p50)
        log(
            f"memories {repetition + 1}/{config.repetitions}: "
            + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in calls)
        )
    ctx.reset()
    labels = {
        "ping": "Redis PING p50",
        "remember": "remember (a warm subject)",
        "recall": "recall k=10, no query (1,000 memories)",
        "recall_query": "recall k=10 with a query (1,000 memories, lexical)",
        "context": "context(session)",
        "context_memories": "context(session, memories=5) (1,000 memories)",
    }
    return against_ping("memories", labels, samples)


SECTION = Section(
    key="memories",
    title="Long-term memories: remember, recall, context(memories=k)",
    run=run,
    notes=(
        "remember is one EVALSHA; recall is one pipelined read of the subject's view plus one "
        "EVALSHA that counts the access (ranking 1,000 memories runs in process); "
        "context(memories=k) adds the recall's two calls to the context's one."
    ),
)
