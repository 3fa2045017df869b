"""15. Backups: rows backed up and restored per second, beside ``pg_dump | gzip`` and ``psql``.

The store is seeded with ``rows`` messages (1M full, 200k quick) over 1,000 sessions of 200
data subjects by one ``INSERT ... SELECT generate_series`` (PostgreSQL), then vacuumed and
analyzed; every other table is empty, so the backup and the anchors read the same rows. Per
repetition, each timed step is one process started from this one, on a fresh directory or
database, after a ``CHECKPOINT``:

1. ``memscribe backup run --full --json`` (the product defaults: 5,000-row batches, one frame
   per subject per batch sealed under that subject's data key, a key-store export at the end)
   into a ``file://`` target. Wall time of the whole command, start-up and imports included.
2. The anchor: ``pg_dump --data-only --table=messages --table=sessions | gzip -6`` into a file.
3. ``memscribe backup restore ID --into URL --json`` into an empty database (the restore
   migrates it: about a second, inside its time).
4. The anchor: ``gunzip -c | psql --single-transaction`` of step 2's file into an empty
   database migrated beforehand (outside its time).

Peak RSS is ``ru_maxrss`` of the command's process from ``wait4``: the whole Python process,
interpreter, SQLAlchemy and everything else it imports, at its largest. The command is forked
from a small launcher, not from the bench, whose own size Linux would report instead.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench import stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, summarize
from bench.section import Section
from core.store import db
from core.store.db import migrate

SESSIONS = 1000
SUBJECTS = 200
# The acceptance of the backups issue: the backing-up process stays under 200 MB for 1M rows.
RSS_TARGET = Target("<", 200)
STEP_TIMEOUT_S = 1800.0
# Random keys for the run: the bench never writes a development secrets file.
_KEK = base64.b64encode(os.urandom(32)).decode()
_HASH_KEY = base64.b64encode(os.urandom(32)).decode()
# Contents drawn from the pool by a hash of the row number: a periodic choice would repeat
# within a session, whose rows a backup frames together, and zlib would fold the repeats away.
_SEED = """
INSERT INTO messages (message_id, tenant, session_id, seq, role, content, tokens, created_at)
SELECT 'bk-' || g, 'bench', 'bk-' || (g % :sessions), g / :sessions + 1,
       CASE WHEN (g / :sessions) % 2 = 0 THEN 'user' ELSE 'assistant' END,
       (CAST(:contents AS text[]))[1 + (hashtext(g::text)::bigint + 2147483648) % :pool], 100,
       now() - interval '1 hour' + g * interval '1 ms'
FROM generate_series(0, :rows - 1) g
"""
_SEED_SESSIONS = """
INSERT INTO sessions (tenant, session_id, subject_id, created_at, updated_at, last_seq)
SELECT 'bench', 'bk-' || s, 'subj-' || (s % :subjects), now() - interval '1 hour', now(),
       :rows / :sessions + 1
FROM generate_series(0, :sessions - 1) s
"""


# Runs the command as its own child and reports that child's ru_maxrss and wall time. Linux
# carries the high-water RSS of the image a process execs over into ru_maxrss: a command
# forked from the bench (hundreds of MB) would report the bench's size. Forked from this small
# launcher, it reports its own (or the launcher's ~10 MB, far below any memscribe process).
_LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {time.perf_counter() - started}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


@dataclass(frozen=True)
class Step:
    """One timed command: its wall time, its peak RSS and what it printed."""

    seconds: float
    peak_rss_mb: float
    stdout: str


def _empty_tables(ctx: BenchContext) -> None:
    # Every table a backup reads (earlier sections leave summaries, state, ...), and the data
    # keys: this section's KEK must wrap all of them.
    names = ", ".join(table.name for table in db.metadata.sorted_tables)
    with ctx.engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {names}"))


def _seed(ctx: BenchContext, rows: int) -> float:
    started = time.monotonic()
    params = {
        "rows": rows,
        "sessions": SESSIONS,
        "subjects": SUBJECTS,
        "contents": list(ctx.workload.contents),
        "pool": len(ctx.workload.contents),
    }
    with ctx.engine.begin() as connection:
        connection.execute(sa.text(_SEED), params)
        connection.execute(sa.text(_SEED_SESSIONS), params)
    with ctx.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(
            sa.text("VACUUM ANALYZE messages, sessions")
        )
    return time.monotonic() - started


def _checkpoint(ctx: BenchContext) -> None:
    # Each timed step starts with no dirty pages left by the one before.
    with ctx.engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("CHECKPOINT"))


def _count(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sa.text(
                        "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM sessions)"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _memscribe(env: dict[str, str], *args: str) -> Step:
    """``memscribe ARGS`` in a process of its own, timed, with its peak RSS."""
    with tempfile.TemporaryDirectory() as scratch:
        measured = Path(scratch) / "rusage"
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _LAUNCHER, str(measured), "-m", "worker.cli", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a timeout kills the launcher and the command together
        )
        try:
            stdout, stderr = process.communicate(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise stores.BenchError(
                f"memscribe {' '.join(args[:2])}: not done in {STEP_TIMEOUT_S:.0f}s"
            ) from None
        if process.returncode != 0:
            raise stores.BenchError(
                f"memscribe {' '.join(args[:2])} exited {process.returncode}: "
                f"{(stdout + stderr).decode()[-3000:]}"
            )
        maxrss_kib, seconds = measured.read_text().split()
    return Step(float(seconds), int(maxrss_kib) * 1024 / 1e6, stdout.decode())


def _report(step: Step) -> dict[str, Any]:
    # --json prints one indented object; anything before it is not ours to parse.
    report: dict[str, Any] = json.loads(step.stdout[step.stdout.index("{") :])
    return report


def _pipe(first: list[str], second: list[str], *, out: BinaryIO, what: str) -> float:
    """``first | second > out`` with no shell, timed from start to both exited."""
    started = time.perf_counter()
    producer = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert producer.stdout is not None
    consumer = subprocess.Popen(second, stdin=producer.stdout, stdout=out, stderr=subprocess.PIPE)
    producer.stdout.close()  # the consumer holds the read end; the producer sees EPIPE if it dies
    try:
        _, consumer_err = consumer.communicate(timeout=STEP_TIMEOUT_S)
        producer_err = producer.stderr.read() if producer.stderr else b""
        producer.wait(timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        for process in (producer, consumer):
            process.kill()
            process.wait()
        raise stores.BenchError(f"{what}: not done in {STEP_TIMEOUT_S:.0f}s") from None
    seconds = time.perf_counter() - started
    if producer.returncode or consumer.returncode:
        raise stores.BenchError(
            f"{what} failed ({producer.returncode}, {consumer.returncode}): "
            f"{(producer_err + consumer_err).decode()[-3000:]}"
        )
    return seconds


def _repetition(ctx: BenchContext, rows: int, samples: Samples, workdir: Path) -> str:
    env = {
        **ctx.worker_env(),
        "MEMSCRIBE_KEK": _KEK,
        "MEMSCRIBE_KEK_ID": "bench",
        "MEMSCRIBE_HASH_KEY": _HASH_KEY,
        "MEMSCRIBE_BACKUP_URL": f"file://{workdir / 'target'}",
    }
    source = ctx.stores.database_url
    total = rows + SESSIONS

    # 1. memscribe backup
    _checkpoint(ctx)
    backup = _memscribe(env, "backup", "run", "--full", "--json")
    made = _report(backup)["backup"]
    if made["total_rows"] != total:
        raise stores.BenchError(f"backup: {made['total_rows']} rows backed up of {total}")
    samples.add("backup_rows_per_s", made["total_rows"] / backup.seconds)
    samples.add("backup_rss_mb", backup.peak_rss_mb)
    samples.add("backup_bytes_per_row", made["bytes"] / made["total_rows"])

    # 2. pg_dump | gzip
    dump = workdir / "dump.sql.gz"
    _checkpoint(ctx)
    with dump.open("wb") as out:
        dump_s = _pipe(
            ["pg_dump", "--data-only", "--table=messages", "--table=sessions",
             stores.libpq_url(source)],
            ["gzip", "-6"],
            out=out,
            what="pg_dump | gzip",
        )  # fmt: skip
    samples.add("dump_rows_per_s", total / dump_s)
    samples.add("dump_bytes_per_row", dump.stat().st_size / total)

    # 3. memscribe restore, into an empty database it migrates itself
    into_name = f"{make_url(source).database}_restore"
    psql_name = f"{into_name}_psql"
    try:
        into = stores.fresh_database(ctx.stores.database_url, into_name)
        _checkpoint(ctx)
        restore = _memscribe(env, "backup", "restore", made["id"], "--into", into, "--json")
        restored = _report(restore)["rows"]
        if restored != total or _count(into) != total:
            raise stores.BenchError(f"restore: {restored} rows restored of {total}")
        samples.add("restore_rows_per_s", total / restore.seconds)
        samples.add("restore_rss_mb", restore.peak_rss_mb)
        stores.drop_database(ctx.stores.database_url, into_name)

        # 4. gunzip | psql, into an empty database migrated beforehand
        anchor = stores.fresh_database(ctx.stores.database_url, psql_name)
        migrate(anchor)
        _checkpoint(ctx)
        with open(os.devnull, "wb") as out:
            psql_s = _pipe(
                ["gunzip", "-c", str(dump)],
                ["psql", "-q", "-X", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                 stores.libpq_url(anchor)],
                out=out,
                what="gunzip | psql",
            )  # fmt: skip
        if _count(anchor) != total:
            raise stores.BenchError(f"psql: {_count(anchor)} rows loaded of {total}")
        samples.add("psql_rows_per_s", total / psql_s)
    finally:
        stores.drop_database(ctx.stores.database_url, into_name)
        stores.drop_database(ctx.stores.database_url, psql_name)
    return (
        f"backup {backup.seconds:.1f}s ({samples['backup_rows_per_s'][-1]:.0f} rows/s, "
        f"{made['bytes'] / 1e6:.1f} MB, peak RSS {backup.peak_rss_mb:.0f} MB) vs pg_dump|gzip "
        f"{dump_s:.1f}s ({samples['dump_rows_per_s'][-1]:.0f} rows/s, "
        f"{dump.stat().st_size / 1e6:.1f} MB); restore {restore.seconds:.1f}s "
        f"({samples['restore_rows_per_s'][-1]:.0f} rows/s, peak RSS {restore.peak_rss_mb:.0f} "
        f"MB) vs psql {psql_s:.1f}s ({samples['psql_rows_per_s'][-1]:.0f} rows/s)"
    )


def run(ctx: BenchContext) -> list[Figure]:
    rows = {"full": 1_000_000, "quick": 200_000}.get(ctx.config.mode, 5_000)
    repetitions = 1 if ctx.config.mode == "full" else min(2, ctx.config.repetitions)
    samples = Samples()
    for repetition in range(repetitions):
        ctx.reset()
        _empty_tables(ctx)
        seed_s = _seed(ctx, rows)
        workdir = Path(tempfile.mkdtemp(prefix="backup-", dir=ctx.log_dir))
        try:
            line = _repetition(ctx, rows, samples, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        log(f"backup {repetition + 1}/{repetitions}: seeded {rows} rows in {seed_s:.1f}s; {line}")
    ctx.reset()
    _empty_tables(ctx)
    of = f"{rows} messages + {SESSIONS} sessions"
    return [
        summarize("backup.rows_per_s", f"backup rows per second ({of})", "rows/s",
                  samples["backup_rows_per_s"]),
        summarize("backup.pg_dump_gzip_rows_per_s", "pg_dump + gzip -6 rows per second",
                  "rows/s", samples["dump_rows_per_s"]),
        summarize("backup.vs_pg_dump", "backup rows/s / pg_dump + gzip rows/s", "x",
                  samples.ratio("backup_rows_per_s", "dump_rows_per_s"),
                  anchor="backup.pg_dump_gzip_rows_per_s"),
        summarize("backup.peak_rss_mb", "peak RSS of the backup process", "MB",
                  samples["backup_rss_mb"], target=RSS_TARGET if rows >= 1_000_000 else None),
        summarize("backup.bytes_per_row", "backup bytes per row (encrypted, zlib)", "B",
                  samples["backup_bytes_per_row"]),
        summarize("backup.pg_dump_bytes_per_row", "pg_dump + gzip -6 bytes per row", "B",
                  samples["dump_bytes_per_row"]),
        summarize("restore.rows_per_s", "restore rows per second (into an empty database)",
                  "rows/s", samples["restore_rows_per_s"]),
        summarize("restore.psql_rows_per_s", "gunzip + psql rows per second", "rows/s",
                  samples["psql_rows_per_s"]),
        summarize("restore.vs_psql", "restore rows/s / gunzip + psql rows/s", "x",
                  samples.ratio("restore_rows_per_s", "psql_rows_per_s"),
                  anchor="restore.psql_rows_per_s"),
        summarize("restore.peak_rss_mb", "peak RSS of the restore process", "MB",
                  samples["restore_rss_mb"]),
    ]  # fmt: skip


SECTION = Section(
    key="backup",
    title="Backups: rows backed up and restored per second vs pg_dump + gzip and psql; peak RSS",
    run=run,
    notes=(
        "Messages seeded by SQL (1M full, 200k quick) over 1,000 sessions of 200 subjects, "
        "content as plain text from the bench's pool of ~100-token texts (content sealed at "
        "drain time is not needed: a backup seals every frame under its subject's key either "
        "way). rows = messages + sessions. Each step is one process, timed wall to wall "
        "(memscribe's start-up included; its restore migrates the empty database, psql's was "
        "migrated beforehand); the product's backup defaults, key-store export included. "
        "pg_dump | gzip and gunzip | psql run as two processes each. Peak RSS: ru_maxrss of "
        "the whole memscribe process (forked from a ~10 MB launcher: a process forked from "
        "the bench would report the bench's size). MB = 10^6 bytes."
    ),
)
