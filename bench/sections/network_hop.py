"""1c. Over a real network hop: Redis in a namespace behind a veth pair with 1 ms of netem
delay, where round trips dominate, as they do between an app server and its Redis.

memscribe's append (one round trip) against PING (one), LangChain's
``RedisChatMessageHistory.add_message`` (the real library: RPUSH, then EXPIRE when a TTL is
set, two round trips, and nothing durable) and a Celery ``.delay()`` publish to a Redis broker
on the same server. Calls alternate one by one; ratios are taken within each repetition.
Needs root (``ip netns``); without it the section reports why and no figures.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from celery import Celery

from bench import netns
from bench.anchors import langchain_add_message
from bench.context import BenchContext, log
from bench.figures import Figure, Samples
from bench.section import Section
from bench.turns import against_ping, p50s_in_turns, timed
from config.settings import _with_db
from core.client import MemoryClient, redis_from_url

DELAY_MS = 1.0
CALLS = {"full": 2000, "quick": 400}


def run(ctx: BenchContext) -> list[Figure]:
    reason = netns.unavailable()
    if reason:
        log(f"network hop: skipped ({reason})")
        return []
    samples = Samples()
    with netns.redis_behind_a_hop(delay_ms=DELAY_MS, log_dir=ctx.log_dir) as (url, how):
        log(f"network hop: {DELAY_MS:g} ms round trip added by {how}")
        client = MemoryClient(redis=redis_from_url(url), settings=ctx.settings, engine=ctx.engine)
        broker = Celery("bench-hop", broker=_with_db(url, 1), set_as_current=False)
        broker.conf.update(task_serializer="json", accept_content=["json"])
        label, langchain = langchain_add_message(url, ctx.settings.session_ttl_s)
        sessions = [f"hop-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
        calls: dict[str, Callable[[int], object]] = {
            "ping": lambda _i: client.redis.ping(),
            "memscribe": lambda i: client.append(sessions[i % 20], "user", f"message {i}"),
            "celery": lambda i: broker.send_task("naive.save", kwargs={"i": i}, queue="hop"),
        }
        if label:
            calls["langchain"] = langchain
        for call in calls.values():  # connections, scripts, sessions (their cold append)
            timed(call, 0, 40, [])
        for repetition in range(ctx.config.repetitions):
            count = CALLS.get(ctx.config.mode, 50)
            for key, p50 in p50s_in_turns(calls, count=count).items():
                samples.add(f"{key}.p50", p50)
            log(
                f"network hop {repetition + 1}/{ctx.config.repetitions}: "
                + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in calls)
            )
        client.close()
    labels = {
        "ping": "PING over the hop: p50",
        "memscribe": "memscribe append (one EVALSHA)",
        "celery": "Celery .delay() publish (Redis broker)",
    }
    if label:
        labels["langchain"] = label
    return against_ping("hop", labels, samples)


SECTION = Section(
    key="network_hop",
    title="Over a real network hop (netns + veth, 1 ms more per round trip)",
    run=run,
    notes=(
        "Round trips dominate here: one round trip should cost about one round trip. The delay "
        "is tc netem where the kernel has it, else bench/delay_proxy.py in the namespace (the "
        "log says which)."
    ),
)
