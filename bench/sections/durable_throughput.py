"""2. Durable throughput: messages per second from "appended" to "committed in PostgreSQL".

Three designs, one process each, in every repetition (their order rotates):

- memscribe: a real ``persist`` worker (concurrency 2) and beat. With every shard's drain lease
  held by the bench, the warm, polling worker drains nothing while N messages are appended;
  one ``DEL`` of the leases starts the clock, which stops when the WAL backlog is zero (an
  entry is acked only after its batch committed). Worker start-up is outside the clock.
- naive: one Celery task per message doing INSERT + COMMIT, a real worker (prefork, one
  child). Its consumer is cancelled through Celery's remote control, N tasks are enqueued, and
  re-adding the consumer starts the clock, which stops when all N rows are in PostgreSQL.
- floor: raw psycopg2 in this process, no Redis, no Celery: COPY into a temporary staging
  table then INSERT ... ON CONFLICT DO NOTHING, one commit per batch of ``batch_size``, from
  rows already in memory.

The tables are emptied before each run so every design starts from the same table size.
"""

from __future__ import annotations

import io
import time
import uuid
from datetime import UTC, datetime

from bench import naive_app, stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, summarize
from bench.pipeline import NaiveWorker, memscribe_pipeline, naive_worker
from bench.section import Section

# After taking the leases: a drainer that was mid-pass notices at its next renew (one batch).
PAUSE_GRACE_S = 0.3
P4_TARGET = Target(">=", 70)
FLOOR_TARGET = Target(">=", 0.7)
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS bench_stage (
    message_id text, tenant text, session_id text, seq bigint, role text, content text,
    tokens integer, metadata jsonb, created_at timestamptz
) ON COMMIT DELETE ROWS
"""
_COLUMNS = "message_id, tenant, session_id, seq, role, content, tokens, metadata, created_at"
_MOVE = f"""
INSERT INTO messages ({_COLUMNS}, persisted_at)
SELECT {_COLUMNS}, clock_timestamp() FROM bench_stage ON CONFLICT (message_id) DO NOTHING
"""


def _timeout_s(messages: int) -> float:
    return 60 + messages / 200


def _check_rows(ctx: BenchContext, tenant: str, expected: int, design: str) -> None:
    stored = stores.count_rows(ctx.engine, tenant)
    if stored != expected:
        raise stores.BenchError(f"{design}: {stored} rows stored for {expected} messages")


def _memscribe(ctx: BenchContext, tenant: str) -> float:
    workload, client, count = ctx.workload, ctx.client, ctx.config.throughput_messages
    ctx.wait_for_backlog(timeout_s=60)  # the previous run is fully drained
    stores.truncate(ctx.engine)
    with ctx.drain_paused():
        time.sleep(PAUSE_GRACE_S)
        for i in range(count):
            client.append(workload.session(i), workload.role(i), workload.content(i), tenant=tenant)
        if (backlog := ctx.backlog()) != count:
            raise stores.BenchError(f"memscribe: backlog {backlog} before the clock, not {count}")
        started = time.time()
    finished = ctx.wait_for_backlog(timeout_s=_timeout_s(count))
    _check_rows(ctx, tenant, count, "memscribe")
    return count / (finished - started)


def _naive(ctx: BenchContext, worker: NaiveWorker, tenant: str) -> float:
    workload, count = ctx.workload, ctx.config.naive_messages
    stores.truncate(ctx.engine)
    worker.pause()
    for i in range(count):
        content = workload.content(i)
        naive_app.save.delay(
            message_id=uuid.uuid4().hex,
            tenant=tenant,
            session_id=workload.session(i),
            seq=i,
            role=workload.role(i),
            content=content,
            tokens=len(content) // 4,
            created_us=time.time_ns() // 1000,
        )
    started = time.time()
    worker.resume()
    deadline = time.monotonic() + _timeout_s(count)
    while stores.count_rows(ctx.engine, tenant) < count:
        if time.monotonic() > deadline:
            raise stores.BenchError(f"naive: {count} tasks not done in {_timeout_s(count):.0f}s")
        time.sleep(0.02)
    finished = time.time()
    _check_rows(ctx, tenant, count, "naive")
    return count / (finished - started)


def _floor(ctx: BenchContext, tenant: str) -> float:
    workload, count, batch = ctx.workload, ctx.config.throughput_messages, ctx.settings.batch_size
    stores.truncate(ctx.engine)
    now = datetime.now(UTC)
    rows = [
        (
            uuid.uuid4().hex,
            tenant,
            workload.session(i),
            i,
            workload.role(i),
            workload.content(i),
            len(workload.content(i)) // 4,
            now,
        )
        for i in range(count)
    ]
    connection = ctx.engine.raw_connection()  # a plain psycopg2 connection underneath
    try:
        cursor = connection.cursor()
        cursor.execute(_STAGE)
        connection.commit()
        started = time.perf_counter()
        for first in range(0, count, batch):
            buffer = io.StringIO()
            for mid, ten, sid, seq, role, content, tokens, created in rows[first : first + batch]:
                content = content.translate(_COPY_ESCAPES)
                buffer.write(
                    f"{mid}\t{ten}\t{sid}\t{seq}\t{role}\t{content}\t{tokens}\t\\N\t"
                    f"{created.isoformat()}\n"
                )
            buffer.seek(0)
            cursor.copy_expert(f"COPY bench_stage ({_COLUMNS}) FROM STDIN", buffer)
            cursor.execute(_MOVE)
            connection.commit()
        elapsed = time.perf_counter() - started
        cursor.close()
    finally:
        connection.close()
    _check_rows(ctx, tenant, count, "floor")
    return count / elapsed


def run(ctx: BenchContext) -> list[Figure]:
    samples = Samples()
    ctx.reset()
    with memscribe_pipeline(ctx), naive_worker(ctx) as worker:
        for repetition in range(ctx.config.repetitions):
            designs = {
                "memscribe": lambda tenant: _memscribe(ctx, tenant),
                "naive": lambda tenant: _naive(ctx, worker, tenant),
                "floor": lambda tenant: _floor(ctx, tenant),
            }
            order = list(designs)
            order = order[repetition % 3 :] + order[: repetition % 3]
            for design in order:
                samples.add(design, designs[design](f"tp-{design}-{repetition}"))
            log(
                f"durable throughput {repetition + 1}/{ctx.config.repetitions}: "
                + ", ".join(f"{design} {samples[design][-1]:,.0f} msg/s" for design in designs)
            )
    stores.truncate(ctx.engine)
    return [
        summarize(
            "throughput.memscribe",
            "memscribe drainer (persist.flush)",
            "msg/s",
            samples["memscribe"],
        ),
        summarize(
            "throughput.naive", "naive: one Celery task per message", "msg/s", samples["naive"]
        ),
        summarize(
            "throughput.floor",
            "floor: psycopg2 COPY + INSERT ON CONFLICT",
            "msg/s",
            samples["floor"],
        ),
        summarize(
            "throughput.memscribe_vs_naive",
            "memscribe / naive",
            "x",
            samples.ratio("memscribe", "naive"),
            anchor="throughput.naive",
            target=P4_TARGET,
        ),
        summarize(
            "throughput.memscribe_vs_floor",
            "memscribe / floor",
            "x",
            samples.ratio("memscribe", "floor"),
            anchor="throughput.floor",
            target=FLOOR_TARGET,
        ),
    ]


SECTION = Section(
    key="durable_throughput",
    title="Durable throughput (one worker, concurrency 2, ~100-token messages)",
    run=run,
    notes=(
        "memscribe and the floor write in batches of MEMSCRIBE_BATCH_SIZE; memscribe also "
        "upserts the batch's sessions, the floor does not. Worker start-up is never timed."
    ),
)
