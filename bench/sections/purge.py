"""14. Retention purge: expired messages purged over successive runs while apps append.

The store is seeded with ``rows`` expired messages (1M full, 50k quick) over 1,000 sessions
by one ``INSERT ... SELECT generate_series`` (PostgreSQL), then analyzed. Four threads append
(to other sessions) for a few seconds with no purge running: append p99 "before". Then the
same four threads append while ``Purge.run()`` runs back to back, each run deleting at most
``purge_max_rows_per_run`` rows in batches of ``purge_batch_rows`` (the product defaults),
until nothing is due: rows purged per second and append p99 "during". No drainer runs: the
appends stay in Redis (P1), so what moves their p99 is the purge's CPU, PostgreSQL and Redis
work on this machine (the buffer trim calls included: one Lua call per session per batch).
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import text

from bench.context import BenchContext, log
from bench.figures import Figure, Samples, percentile, summarize
from bench.section import Section
from core.retention.purge import Purge

SESSIONS = 1000
APPENDERS = 4
_SEED = """
INSERT INTO messages (message_id, tenant, session_id, seq, role, content, tokens, created_at,
                      expires_at)
SELECT 'exp-' || g, 'bench', 'old-' || (g % :sessions), g / :sessions + 1, 'user',
       repeat('x', 400), 100, now() - interval '2 days',
       now() - interval '1 day' + g * interval '1 us'
FROM generate_series(0, :rows - 1) g
"""
_SEED_SESSIONS = """
INSERT INTO sessions (tenant, session_id, created_at, updated_at, last_seq, expires_at)
SELECT 'bench', 'old-' || s, now() - interval '2 days', now() - interval '2 days',
       :rows / :sessions + 1, now() - interval '1 day'
FROM generate_series(0, :sessions - 1) s
"""


def _seed(ctx: BenchContext, rows: int) -> float:
    started = time.monotonic()
    with ctx.engine.begin() as connection:
        connection.execute(text(_SEED), {"rows": rows, "sessions": SESSIONS})
        connection.execute(text(_SEED_SESSIONS), {"rows": rows, "sessions": SESSIONS})
    with ctx.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            text("VACUUM ANALYZE messages")
        )
    return time.monotonic() - started


def _append_while(ctx: BenchContext, work: threading.Event, tag: str) -> list[float]:
    """Four threads append until ``work`` is cleared; every call's latency in µs."""
    latencies: list[list[float]] = [[] for _ in range(APPENDERS)]
    client, workload = ctx.client, ctx.workload

    def append(n: int) -> None:
        i = 0
        while work.is_set():
            started = time.perf_counter_ns()
            client.append(f"{tag}-{n}-{i % 50}", "user", workload.content(i))
            latencies[n].append((time.perf_counter_ns() - started) / 1000)
            i += 1

    threads = [threading.Thread(target=append, args=(n,)) for n in range(APPENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(value for values in latencies for value in values)


def run(ctx: BenchContext) -> list[Figure]:
    quick = ctx.config.mode != "full"
    rows = {"full": 1_000_000, "quick": 50_000}.get(ctx.config.mode, 5_000)
    baseline_s = 3.0 if quick else 8.0
    repetitions = 1 if not quick else min(2, ctx.config.repetitions)
    samples = Samples()
    for repetition in range(repetitions):
        ctx.reset()
        seed_s = _seed(ctx, rows)
        tag = uuid.uuid4().hex[:6]
        before = _timed_appends(ctx, f"b{tag}", baseline_s)
        purge = Purge(redis=ctx.redis, engine=ctx.engine, settings=ctx.settings)
        work = threading.Event()
        work.set()
        during: list[float] = []
        appender = threading.Thread(
            target=lambda out, ev, name: out.extend(_append_while(ctx, ev, name)),
            args=(during, work, f"d{tag}"),
        )
        appender.start()
        started = time.monotonic()
        runs = purged = batches = 0
        while True:
            report = purge.run()
            runs += 1
            purged += report.rows
            batches += report.batches
            if not report.more:
                break
        elapsed = time.monotonic() - started
        work.clear()
        appender.join()
        samples.add("rows_per_s", purged / elapsed)
        samples.add("runs", runs)
        samples.add("batches", batches)
        samples.add("p99_before", percentile(before, 99))
        samples.add("p99_during", percentile(during, 99))
        samples.add("p50_before", percentile(before, 50))
        samples.add("p50_during", percentile(during, 50))
        log(
            f"purge {repetition + 1}/{repetitions}: seeded {rows} rows in {seed_s:.1f}s; purged "
            f"{purged} in {elapsed:.1f}s ({purged / elapsed:.0f} rows/s, {runs} runs, "
            f"{batches} batches); append p99 {samples['p99_before'][-1]:.0f}us before, "
            f"{samples['p99_during'][-1]:.0f}us during ({len(during)} appends)"
        )
    ctx.reset()
    return [
        summarize("purge.rows_per_s", f"rows purged per second ({rows} expired)", "rows/s",
                  samples["rows_per_s"]),
        summarize("purge.runs", "purge runs to empty the backlog", "runs", samples["runs"]),
        summarize("purge.batches", "purge batches (statements)", "batches", samples["batches"]),
        summarize("purge.append_p99_before", "append p99, no purge", "us", samples["p99_before"]),
        summarize("purge.append_p99_during", "append p99 while purging", "us",
                  samples["p99_during"], anchor="purge.append_p99_before"),
        summarize("purge.append_p99_ratio", "append p99 during / before", "x",
                  samples.ratio("p99_during", "p99_before")),
        summarize("purge.append_p50_ratio", "append p50 during / before", "x",
                  samples.ratio("p50_during", "p50_before")),
    ]  # fmt: skip


def _timed_appends(ctx: BenchContext, tag: str, seconds: float) -> list[float]:
    work = threading.Event()
    work.set()
    timer = threading.Timer(seconds, work.clear)
    timer.start()
    latencies = _append_while(ctx, work, tag)
    timer.cancel()
    return latencies


SECTION = Section(
    key="purge",
    title="Retention purge: rows purged per second, append p99 during vs before",
    run=run,
    notes=(
        "Expired rows seeded by SQL (1M full, 50k quick) over 1,000 sessions; the product's "
        "purge defaults (5,000-row batches, 200,000 rows per run), runs back to back; four "
        "append threads on one client, no drainer."
    ),
)
