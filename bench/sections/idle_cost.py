"""6. What an idle pipeline costs the Redis that serves the request path.

One persist worker (concurrency 2) and beat run against a private redis-server that holds only
memscribe's data (16 shards, nothing to drain); the broker stays on the bench's broker Redis,
elsewhere. After the worker proved live, ``INFO commandstats`` is reset and read again after a
quiet window: every command a worker, its children and beat sent to the data Redis, per second.
"""

from __future__ import annotations

import time
import uuid

import redis

from bench import stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, summarize
from bench.section import Section
from core.client import MemoryClient, redis_from_url
from worker import processes

IDLE_TARGET = Target("<=", 100)
LIVE_TIMEOUT_S = 90


def _commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        int(value["calls"])
        for name, value in stats.items()
        if name not in ("cmdstat_info", "cmdstat_config|resetstat")
    )


def _wait_live(ctx: BenchContext, client: MemoryClient) -> None:
    tenant = f"idle-{uuid.uuid4().hex[:8]}"
    client.append("warm-up", "system", "is the pipeline live?", tenant=tenant)
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while not stores.count_rows(ctx.engine, tenant):
        if time.monotonic() > deadline:
            raise stores.BenchError(f"the idle-cost worker made nothing durable ({ctx.log_dir})")
        time.sleep(0.1)


def run(ctx: BenchContext) -> list[Figure]:
    window_s = {"full": 20.0, "quick": 5.0}.get(ctx.config.mode, 1.0)
    samples = Samples()
    with stores.private_redis(ctx.log_dir, "idle", ["--appendonly", "no"]) as url:
        env = {**ctx.worker_env(), "MEMSCRIBE_REDIS_URL": url, "MEMSCRIBE_SHARDS": "16"}
        settings = ctx.settings.model_copy(update={"redis_url": url, "shards": 16})
        client = MemoryClient(redis=redis_from_url(url), settings=settings, engine=ctx.engine)
        worker = processes.worker_command(["persist"], concurrency=2, name="idle")
        started = [
            processes.start(worker, env=env, log_path=ctx.log_dir / "idle-worker.log"),
            processes.start(
                processes.beat_command(), env=env, log_path=ctx.log_dir / "idle-beat.log"
            ),
        ]
        try:
            _wait_live(ctx, client)
            time.sleep(2.0)  # the warm-up's flush ends; from here on nothing is left to drain
            for repetition in range(ctx.config.repetitions):
                client.redis.config_resetstat()
                began = time.monotonic()
                time.sleep(window_s)
                samples.add("idle", _commands(client.redis) / (time.monotonic() - began))
                log(
                    f"idle cost {repetition + 1}/{ctx.config.repetitions}: "
                    f"{samples['idle'][-1]:.0f} commands/s"
                )
        finally:
            for process in reversed(started):
                processes.stop(process)
            client.close()
    return [
        summarize(
            "idle.persist_worker_and_beat.commands_per_s",
            "data-plane Redis commands/s: idle persist worker (concurrency 2) + beat, 16 shards",
            "cmd/s",
            samples["idle"],
            target=IDLE_TARGET,
        )
    ]


SECTION = Section(
    key="idle_cost",
    title="Idle cost: Redis commands of a worker with nothing to do",
    run=run,
    notes="Counted on a Redis that holds only memscribe's data; the broker is elsewhere.",
)
