"""1. Append path latency: what memscribe adds to a request, against what an app would do instead.

One client thread, warm sessions (each had an append since the last reset; the first append
of a session is measured in ``append_cold``). In each repetition every variant makes
``latency_calls`` calls, taken in turn call by call (A, B, C, ..., then A again, the order
rotating), so machine noise lands on all of them alike; each ratio is taken within a
repetition. Call by call matters on loopback: a round trip costs about 22 us when the client
and redis-server run on one core and about 80 us when one has to wake the other core, and
which one a run gets changes every few thousand calls. Chunks of 250 calls let PING and
append land in different states (the 5.7x of the first bench); alternating calls gives both
the same state, which is what a user's request sees. No worker runs: nothing competes for
CPU, and appends, tasks and rows are cleared between repetitions.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench import naive_app, stores
from bench.anchors import langchain_add_message
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, percentile, summarize
from bench.section import Section
from bench.turns import timed
from core.client import MemoryClient, redis_from_url

WARMUP_CALLS = 200
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
P1_TARGET = Target("<=", 1.5)
P1_P99_TARGET = Target("<=", 3.0)
TENANT = "latency"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    call: Callable[[int], object]  # message number -> one request-path write
    # The PING variant this one is interleaved and compared with. The slow anchors (a broker
    # publish, a SQL commit, an fsync) run beside a PING of their own: interleaved with the
    # fast ones they would slow every call that follows them, PING included.
    anchor: str = "ping"


def _variants(ctx: BenchContext, aof_client: MemoryClient | None) -> list[Variant]:
    workload, client, redis = ctx.workload, ctx.client, ctx.redis
    ttl_s = ctx.settings.session_ttl_s

    def memscribe(i: int) -> object:
        return client.append(workload.session(i), workload.role(i), workload.content(i))

    def ping(_i: int) -> object:
        return redis.ping()  # the same client, so the same connection pool as append

    def langchain(i: int) -> object:
        # RedisChatMessageHistory.add_message: serialize, push, then a separate EXPIRE.
        key = f"bench:lc:{workload.session(i)}"
        message = {"type": "human", "data": {"content": workload.content(i), "type": "human"}}
        redis.rpush(key, json.dumps(message))
        return redis.expire(key, ttl_s)

    def fields(i: int) -> dict[str, object]:
        content = workload.content(i)
        return {
            "message_id": uuid.uuid4().hex,
            "tenant": TENANT,
            "session_id": workload.session(i),
            "seq": i,  # unique across sessions too: (tenant, session_id, seq) is the key
            "role": workload.role(i),
            "content": content,
            "tokens": len(content) // 4,
            "created_us": time.time_ns() // 1000,
        }

    def celery_delay(i: int) -> object:
        return naive_app.save.delay(**fields(i))

    def sql_insert(i: int) -> object:
        naive_app.save_message(naive_app.engine(), **fields(i))  # type: ignore[arg-type]
        return None

    slow = "ping_slow"
    variants = [
        Variant("ping", "Redis PING with redis-py, same pool (floor)", ping),
        Variant("memscribe", "memscribe MemoryClient.append (one EVALSHA)", memscribe),
        Variant("langchain", "LangChain-style RPUSH then EXPIRE (two round trips)", langchain),
    ]
    real_label, real_langchain = langchain_add_message(ctx.stores.redis_url, ttl_s)
    if real_label:
        variants.append(Variant("langchain_real", real_label, real_langchain))
    variants += [
        Variant(slow, "Redis PING beside the slow anchors", ping, anchor=slow),
        Variant("celery", "naive: Celery save_task.delay() (broker publish)", celery_delay, slow),
        Variant("sql", "naive: SQLAlchemy INSERT + COMMIT per message", sql_insert, slow),
    ]
    if aof_client is not None:
        variants.append(
            Variant(
                "memscribe_aof_always",
                "memscribe append, Redis with appendfsync always (zero loss)",
                lambda i: aof_client.append(
                    workload.session(i), workload.role(i), workload.content(i)
                ),
                slow,
            )
        )
    return variants


@contextmanager
def _aof_always_redis(ctx: BenchContext) -> Iterator[str]:
    """Every write fsynced before it answers (Redis 7.0 has no WAITAOF); same flags as the
    product's docker-compose Redis, except the fsync policy."""
    flags = ["--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction"]
    with stores.private_redis(ctx.log_dir, "aof-always", flags) as url:
        yield url


def warm_sessions(ctx: BenchContext) -> None:
    """One untimed append per session: a session's first append is the cold path (measured
    on its own in append_cold), every later one the warm single EVALSHA measured here."""
    workload = ctx.workload
    for i in range(workload.sessions):
        ctx.client.append(workload.session(i), "system", "session opened")


def _purge_naive_queue() -> None:
    with naive_app.app.connection_for_write() as connection:
        connection.default_channel.queue_purge(naive_app.QUEUE)


def _repetition(ctx: BenchContext, variants: list[Variant], offset: int) -> dict[str, list[int]]:
    calls, chunk = ctx.config.latency_calls, ctx.config.latency_chunk
    timings: dict[str, list[int]] = {variant.key: [] for variant in variants}
    for anchor in dict.fromkeys(variant.anchor for variant in variants):
        group = [variant for variant in variants if variant.anchor == anchor]
        for index, first in enumerate(range(offset, offset + calls, chunk)):
            count = min(chunk, offset + calls - first)
            turn = index % len(group)  # rotate who goes first: no variant always follows X
            for variant in group[turn:] + group[:turn]:
                timed(variant.call, first, count, timings[variant.key])
    return timings


def run(ctx: BenchContext) -> list[Figure]:
    config = ctx.config
    with _maybe_aof(ctx) as aof_url:
        aof_client = None
        if aof_url is not None:
            # A private single server, even when the bench's data store is a cluster.
            aof_client = MemoryClient(redis=redis_from_url(aof_url), settings=ctx.settings)
        variants = _variants(ctx, aof_client)
        samples = Samples()
        offset = 0
        for variant in variants:  # connections, scripts, Celery producer pool, caches
            timed(variant.call, offset, WARMUP_CALLS, [])
        offset += WARMUP_CALLS
        for repetition in range(config.repetitions):
            ctx.reset()
            warm_sessions(ctx)
            _purge_naive_queue()
            if aof_client is not None:
                aof_client.redis.flushdb()
            timings = _repetition(ctx, variants, offset)
            offset += config.latency_calls
            for key, values in timings.items():
                ordered = sorted(values)
                for name, q in PERCENTILES:
                    samples.add(f"{key}.{name}", percentile(ordered, q) / 1000)
            log(
                f"append latency {repetition + 1}/{config.repetitions}: "
                + ", ".join(f"{key} p50 {samples[f'{key}.p50'][-1]:.0f}us" for key in timings)
            )
        if aof_client is not None:
            aof_client.close()
        ctx.reset()
        _purge_naive_queue()
    return _figures(variants, samples)


@contextmanager
def _maybe_aof(ctx: BenchContext) -> Iterator[str | None]:
    if not ctx.config.aof_always:
        yield None
        return
    with _aof_always_redis(ctx) as url:
        yield url


def _figures(variants: list[Variant], samples: Samples) -> list[Figure]:
    figures = []
    for variant in variants:
        for name, _q in PERCENTILES:
            figures.append(
                summarize(
                    f"append.{variant.key}.{name}",
                    f"{variant.label}: {name}",
                    "us",
                    samples[f"{variant.key}.{name}"],
                )
            )
    for variant in variants:
        if variant.key == variant.anchor:
            continue
        figures.append(
            summarize(
                f"append.{variant.key}.p50_vs_ping",
                f"{variant.label}: p50 / PING p50",
                "x",
                samples.ratio(f"{variant.key}.p50", f"{variant.anchor}.p50"),
                anchor=f"append.{variant.anchor}.p50",
                target=P1_TARGET if variant.key == "memscribe" else None,
            )
        )
    if any(variant.key == "langchain_real" for variant in variants):
        figures.append(
            summarize(
                "append.memscribe.p50_vs_langchain",
                "memscribe append p50 / LangChain add_message p50 (which is not durable)",
                "x",
                samples.ratio("memscribe.p50", "langchain_real.p50"),
                anchor="append.langchain_real.p50",
                target=Target("<=", 1.0),
            )
        )
    figures.append(
        summarize(
            "append.memscribe.p99_vs_ping",
            "memscribe append: p99 / PING p99",
            "x",
            samples.ratio("memscribe.p99", "ping.p99"),
            anchor="append.ping.p99",
            target=P1_P99_TARGET,
        )
    )
    return figures


SECTION = Section(
    key="append_latency",
    title="Append path latency (one client thread)",
    run=run,
    notes=(
        "Each repetition interleaves every variant call by call; ratios are per repetition. "
        "memscribe counts tokens (tiktoken) and validates in the call; the anchors do neither."
    ),
)
