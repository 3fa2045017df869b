"""3. Lag under load: append-to-durable time at a steady append rate, worker and beat running.

Appender processes (so the GIL caps nothing) send on a fixed schedule, message k at
``start + k / rate`` (open loop: a late message is sent at once, never skipped), over
``sessions`` sessions. Lag is ``persisted_at - created_at`` of every row: the client's clock when
it appended, and PostgreSQL's ``clock_timestamp()`` when the drainer wrote the row, on one host.
"""

from __future__ import annotations

import multiprocessing
import queue
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

import sqlalchemy as sa

from bench import stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, summarize
from bench.pipeline import memscribe_pipeline
from bench.section import Section
from bench.workload import Workload
from config.settings import Settings
from core.client import MemoryClient
from core.store.connections import redis_client

P3_TARGET = Target("<", 1000)  # DESIGN.md P3: p99 under 1 s at 4,000 msg/s
START_DELAY_S = 0.5  # appenders are warm; this only lets every one of them get the job
READY_TIMEOUT_S = 60
_LAG = sa.text(
    """
    SELECT count(*),
           percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY lag_ms),
           max(lag_ms)
    FROM (SELECT extract(epoch FROM persisted_at - created_at) * 1000 AS lag_ms
          FROM messages WHERE tenant = :tenant) AS lags
    """
)


@dataclass(frozen=True)
class Job:
    """Messages ``first, first + step, ...``: ``count`` of them at ``rate`` per second."""

    tenant: str
    rate: float
    count: int
    start_at: float
    first: int
    step: int


def _appender(settings_values: dict[str, Any], workload: Workload, jobs: Any, done: Any) -> None:
    """An appender process: takes jobs until it gets None; reports when each one ends."""
    settings = Settings(**settings_values)
    client = MemoryClient(redis=redis_client(settings), settings=settings)
    client.tokens.count_message("user", workload.content(0))  # load the encoding now
    done.put(None)  # ready
    while (job := jobs.get()) is not None:
        for k in range(job.count):
            delay = job.start_at + k / job.rate - time.time()
            if delay > 0:
                time.sleep(delay)
            i = job.first + k * job.step
            client.append(
                workload.session(i), workload.role(i), workload.content(i), tenant=job.tenant
            )
        done.put(time.time())
    client.close()


@dataclass
class Appenders:
    processes: list[BaseProcess]
    jobs: Any
    done: Any

    def _collect(self, *, timeout_s: float) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        replies: list[Any] = []
        while len(replies) < len(self.processes):
            try:
                replies.append(self.done.get(timeout=1.0))
            except queue.Empty:
                failed = [p.exitcode for p in self.processes if p.exitcode not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise stores.BenchError(
                        f"appender processes failed or hung (exit codes {failed})"
                    ) from None
        return replies

    def run(self, *, tenant: str, rate: float, seconds: float) -> tuple[int, float, float]:
        """Send ``rate`` per second for ``seconds``; returns (messages, start, end)."""
        count = len(self.processes)
        per_appender = int(rate * seconds) // count
        start_at = time.time() + START_DELAY_S
        for index in range(count):
            self.jobs.put(Job(tenant, rate / count, per_appender, start_at, index, count))
        ends = self._collect(timeout_s=START_DELAY_S + seconds * 10 + 60)
        return per_appender * count, start_at, max(ends)


@contextmanager
def appenders(ctx: BenchContext) -> Iterator[Appenders]:
    spawn = multiprocessing.get_context("spawn")
    jobs, done = spawn.Queue(), spawn.Queue()
    processes: list[BaseProcess] = [
        spawn.Process(target=_appender, args=(ctx.settings.model_dump(), ctx.workload, jobs, done))
        for _ in range(ctx.config.lag_appenders)
    ]
    for process in processes:
        process.start()
    pool = Appenders(processes, jobs, done)
    try:
        pool._collect(timeout_s=READY_TIMEOUT_S)
        yield pool
        for _ in processes:
            jobs.put(None)
        for process in processes:
            process.join(timeout=30)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()


def _repetition(ctx: BenchContext, pool: Appenders, tenant: str, samples: Samples) -> None:
    config = ctx.config
    sent, started, finished = pool.run(
        tenant=tenant, rate=config.lag_rate, seconds=config.lag_seconds
    )
    ctx.wait_for_backlog(timeout_s=120, poll_s=0.1)
    with ctx.engine.connect() as connection:
        stored, (p50, p99), worst = connection.execute(_LAG, {"tenant": tenant}).one()
    if stored != sent:
        raise stores.BenchError(f"lag: {stored} rows for {sent} messages")
    samples.add("rate", stored / (finished - started))
    samples.add("p50", p50)
    samples.add("p99", p99)
    samples.add("max", worst)


def run(ctx: BenchContext) -> list[Figure]:
    config = ctx.config
    samples = Samples()
    ctx.reset()
    with memscribe_pipeline(ctx), appenders(ctx) as pool:
        for repetition in range(config.lag_repetitions):
            ctx.wait_for_backlog(timeout_s=60)
            stores.truncate(ctx.engine)
            _repetition(ctx, pool, f"lag-{repetition}", samples)
            log(
                f"lag {repetition + 1}/{config.lag_repetitions}: "
                f"{samples['rate'][-1]:,.0f} msg/s achieved, lag p50 {samples['p50'][-1]:.0f} ms, "
                f"p99 {samples['p99'][-1]:.0f} ms"
            )
    stores.truncate(ctx.engine)
    return _figures(config.lag_rate, config.sessions, config.lag_seconds, samples)


def _figures(rate: float, sessions: int, seconds: float, samples: Samples) -> list[Figure]:
    asked = f"{rate:,.0f} msg/s, {sessions:,} sessions, {seconds:g} s"
    # P3 is stated at 5,000 msg/s: a run whose appenders could not keep that rate (CPU) says so.
    achieved = statistics.median(samples["rate"])
    note = ""
    if achieved < 0.95 * rate:
        note = (
            f"the appenders reached {achieved:,.0f} of {rate:,.0f} msg/s on this machine "
            "(CPU-bound); the lag is for the rate reached"
        )
    return [
        summarize(
            "lag.append_rate", f"append rate achieved (asked: {asked})", "msg/s", samples["rate"]
        ),
        summarize("lag.p50", "append-to-durable lag p50", "ms", samples["p50"]),
        summarize(
            "lag.p99",
            "append-to-durable lag p99",
            "ms",
            samples["p99"],
            target=P3_TARGET if rate >= 5000 else None,
            note=note,
        ),
        summarize("lag.max", "append-to-durable lag max", "ms", samples["max"]),
    ]


SECTION = Section(
    key="lag",
    title="Lag under load (one persist worker and beat running)",
    run=run,
    notes="created_at is the client's clock at append; persisted_at is PostgreSQL's at insert.",
)
