"""14. Retention purge: expired messages purged over successive runs while apps append.

The store is seeded with ``rows`` expired messages (1M full, 200k quick) over 1,000 sessions
by one ``INSERT ... SELECT generate_series`` (PostgreSQL), then analyzed. Four threads append
(to other sessions) for a few seconds with no purge running: append p99 "before". Then the
same four threads append while ``Purge.run()`` runs back to back in a process of its own (as
a maintenance worker runs it), each run deleting at most
``purge_max_rows_per_run`` rows in batches of ``purge_batch_rows`` (the product defaults),
until nothing is due: rows purged per second and append p99 "during". No drainer runs: the
appends stay in Redis (P1), so what moves their p99 is the purge's CPU, PostgreSQL and Redis
work on this machine (the buffer trim calls included: one Lua call per session per batch).
"""

from __future__ import annotations

import json
import subprocess
import sys
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
# Appends measured with no purge running, before it starts.
BASELINE_S = 4.0
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


def _append_while(ctx: BenchContext, work: threading.Event, tag: str) -> list[tuple[float, float]]:
    """Four threads append to warm sessions until ``work`` is cleared: (wall-clock start,
    latency in µs) of every call."""
    calls: list[list[tuple[float, float]]] = [[] for _ in range(APPENDERS)]
    client, workload = ctx.client, ctx.workload

    def append(n: int) -> None:
        i = 0
        while work.is_set():
            at, started = time.time(), time.perf_counter_ns()
            client.append(f"{tag}-{n}-{i % 50}", "user", workload.content(i))
            calls[n].append((at, (time.perf_counter_ns() - started) / 1000))
            i += 1

    threads = [threading.Thread(target=append, args=(n,)) for n in range(APPENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [call for thread_calls in calls for call in thread_calls]


def _purge_in_worker(ctx: BenchContext) -> dict[str, float]:
    """Purge runs back to back in a process of their own, as a maintenance worker runs them
    (in this process the GIL would charge the purge's Python work to the appenders)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.sections.purge"],
        env=ctx.worker_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _p(calls: list[tuple[float, float]], q: float, start: float, end: float) -> float:
    return percentile(sorted(us for at, us in calls if start <= at <= end), q)


def run(ctx: BenchContext) -> list[Figure]:
    rows = {"full": 1_000_000, "quick": 200_000}.get(ctx.config.mode, 5_000)
    repetitions = 1 if ctx.config.mode == "full" else min(2, ctx.config.repetitions)
    samples = Samples()
    for repetition in range(repetitions):
        ctx.reset()
        seed_s = _seed(ctx, rows)
        tag = uuid.uuid4().hex[:6]
        for n in range(APPENDERS):  # warm: a cold session's first append reads the store
            for i in range(50):
                ctx.client.append(f"{tag}-{n}-{i}", "user", "warm")
        work = threading.Event()
        work.set()
        calls: list[tuple[float, float]] = []
        appender = threading.Thread(
            target=lambda out, ev, name: out.extend(_append_while(ctx, ev, name)),
            args=(calls, work, tag),
        )
        before_start = time.time()
        appender.start()
        time.sleep(BASELINE_S)
        before_end = time.time()
        purged = _purge_in_worker(ctx)
        work.clear()
        appender.join()
        start, end = purged["start"], purged["end"]
        samples.add("rows_per_s", purged["rows"] / (end - start))
        for key, value in (("runs", purged["runs"]), ("batches", purged["batches"])):
            samples.add(key, value)
        for q in (50, 99):
            samples.add(f"p{q}_before", _p(calls, q, before_start, before_end))
            samples.add(f"p{q}_during", _p(calls, q, start, end))
        log(
            f"purge {repetition + 1}/{repetitions}: seeded {rows} rows in {seed_s:.1f}s; purged "
            f"{purged['rows']:.0f} in {end - start:.1f}s ({samples['rows_per_s'][-1]:.0f} "
            f"rows/s, {purged['runs']:.0f} runs, {purged['batches']:.0f} batches); append p99 "
            f"{samples['p99_before'][-1]:.0f}us before, {samples['p99_during'][-1]:.0f}us during"
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


def _worker_main() -> None:
    """``python -m bench.sections.purge``: purge until nothing is due; print the totals."""
    from config.settings import get_settings
    from core.store.connections import redis_client
    from core.store.db import make_engine

    settings = get_settings()
    purge = Purge(
        redis=redis_client(settings), engine=make_engine(settings.database_url), settings=settings
    )
    totals = {"rows": 0.0, "runs": 0.0, "batches": 0.0, "start": time.time()}
    while True:
        report = purge.run()
        totals["rows"] += report.rows
        totals["runs"] += 1
        totals["batches"] += report.batches
        if not report.more:
            break
    totals["end"] = time.time()
    print(json.dumps(totals))


SECTION = Section(
    key="purge",
    title="Retention purge: rows purged per second, append p99 during vs before",
    run=run,
    notes=(
        "Expired rows seeded by SQL (1M full, 200k quick) over 1,000 sessions; the product's "
        "purge defaults (5,000-row batches, 200,000 rows per run), runs back to back; four "
        "append threads on one client, no drainer."
    ),
)


if __name__ == "__main__":
    _worker_main()
