"""1. Append path latency: what memscribe adds to a request, against what an app would do instead.

One client thread. In each repetition every variant makes ``latency_calls`` calls, in chunks
taken in turn (variant A 250 calls, B 250, ..., then A again), so machine noise lands on all
of them alike; each ratio is taken within a repetition. No worker runs: nothing competes for
CPU, and appends, tasks and rows are cleared between repetitions.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bench import naive_app, stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, percentile, summarize
from bench.section import Section
from core.client import MemoryClient, redis_from_url
from worker import processes

WARMUP_CALLS = 200
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
P1_TARGET = Target("<=", 1.6)
TENANT = "latency"


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    call: Callable[[int], object]  # message number -> one request-path write


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

    variants = [
        Variant("ping", "Redis PING with redis-py, same pool (floor)", ping),
        Variant("memscribe", "memscribe MemoryClient.append (one EVALSHA)", memscribe),
        Variant("langchain", "LangChain-style RPUSH then EXPIRE (two round trips)", langchain),
        Variant("celery", "naive: Celery save_task.delay() (broker publish)", celery_delay),
        Variant("sql", "naive: SQLAlchemy INSERT + COMMIT per message", sql_insert),
    ]
    if aof_client is not None:
        variants.append(
            Variant(
                "memscribe_aof_always",
                "memscribe append, Redis with appendfsync always (zero loss)",
                lambda i: aof_client.append(
                    workload.session(i), workload.role(i), workload.content(i)
                ),
            )
        )
    return variants


@contextmanager
def _aof_always_redis(ctx: BenchContext) -> Iterator[str]:
    """A private ``redis-server`` with every write fsynced before it answers (Redis 7.0 has no
    WAITAOF), on a free port, with its AOF on the same disk as the checkout."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise stores.BenchError("redis-server is not installed (needed for the AOF row)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = ctx.log_dir / f"aof-always-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    # Same flags as the product's docker-compose Redis, except the fsync policy.
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir)]
    command += ["--maxmemory-policy", "noeviction"]
    process = processes.start(command, log_path=ctx.log_dir / "aof-always-redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not processes.redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise stores.BenchError("the private appendfsync-always redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        processes.stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _timed(call: Callable[[int], object], first: int, count: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for i in range(first, first + count):
        began = clock()
        call(i)
        out.append(clock() - began)


def _purge_naive_queue() -> None:
    with naive_app.app.connection_for_write() as connection:
        connection.default_channel.queue_purge(naive_app.QUEUE)


def _repetition(ctx: BenchContext, variants: list[Variant], offset: int) -> dict[str, list[int]]:
    calls, chunk = ctx.config.latency_calls, ctx.config.latency_chunk
    timings: dict[str, list[int]] = {variant.key: [] for variant in variants}
    for index, first in enumerate(range(offset, offset + calls, chunk)):
        count = min(chunk, offset + calls - first)
        turn = index % len(variants)  # rotate who goes first, so no variant always follows X
        for variant in variants[turn:] + variants[:turn]:
            _timed(variant.call, first, count, timings[variant.key])
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
            _timed(variant.call, offset, WARMUP_CALLS, [])
        offset += WARMUP_CALLS
        for repetition in range(config.repetitions):
            ctx.reset()
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
    for variant in variants[1:]:
        figures.append(
            summarize(
                f"append.{variant.key}.p50_vs_ping",
                f"{variant.label}: p50 / PING p50",
                "x",
                samples.ratio(f"{variant.key}.p50", "ping.p50"),
                anchor="append.ping.p50",
                target=P1_TARGET if variant.key == "memscribe" else None,
            )
        )
    return figures


SECTION = Section(
    key="append_latency",
    title="Append path latency (one client thread)",
    run=run,
    notes=(
        "Each repetition interleaves every variant in chunks; ratios are per repetition. "
        "memscribe counts tokens (tiktoken) and validates in the call; the anchors do neither."
    ),
)
