"""The bench's own Redis databases and PostgreSQL database: claim, create, migrate, empty."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from core.store.connections import every_primary
from core.store.db import migrate
from worker import processes

# Set in every Redis database the bench flushes: a database holding keys but not this one
# belongs to someone else, and the bench refuses to flush it.
MARKER = "memscribe-bench:owner"


class BenchError(RuntimeError):
    """The bench cannot run as configured; the message says what to change."""


def claim_redis(client: redis.Redis, url: str) -> None:
    """Flush a Redis database the bench owns (empty, or marked by an earlier bench run)."""
    if client.dbsize(**every_primary(client)) and not client.exists(MARKER):
        raise BenchError(
            f"Redis database {url} holds keys the bench did not write; point "
            "MEMSCRIBE_BENCH_REDIS_URL (or _BROKER_URL, _NAIVE_BROKER_URL) at empty databases"
        )
    flush_redis(client)


def flush_redis(client: redis.Redis) -> None:
    client.flushdb()
    client.set(MARKER, "1")


def lock_run(database_url: str, redis_url: str) -> Connection:
    """Hold a PostgreSQL advisory lock naming these stores for as long as the returned
    connection stays open: a second run on the same stores would flush the first's data."""
    parsed = make_url(database_url)
    admin = sa.create_engine(parsed.set(database="postgres"), poolclass=NullPool)
    connection = admin.connect()
    got = connection.execute(
        sa.text("SELECT pg_try_advisory_lock(hashtext(:name))"),
        {"name": f"memscribe-bench {parsed.database} {redis_url}"},
    ).scalar_one()
    connection.commit()  # the lock is per session: it outlives this transaction
    if not got:
        connection.close()
        raise BenchError(f"another bench run is using {parsed.database} and {redis_url}")
    return connection


def prepare_database(url: str) -> None:
    """Create the bench database afresh and migrate it: a database left by another checkout
    may carry a migration history this one does not know."""
    parsed = make_url(url)
    admin = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()
    migrate(url)


def _admin(url: str) -> Engine:
    parsed = make_url(url).set(database="postgres")
    return sa.create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def fresh_database(url: str, name: str) -> str:
    """An empty database ``name`` on ``url``'s server (dropped first if a killed run left it),
    for an anchor or a restore; its URL."""
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(url).set(database=name).render_as_string(False)


def drop_database(url: str, name: str) -> None:
    admin = _admin(url)
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL as libpq takes it (pg_dump, psql, psycopg 3): no ``+psycopg2``."""
    return make_url(url).set(drivername="postgresql").render_as_string(False)


def truncate(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE messages, sessions, memories, memory_lineage"))


def count_rows(engine: Engine, tenant: str) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(
            sa.text("SELECT count(*) FROM messages WHERE tenant = :tenant"), {"tenant": tenant}
        ).scalar_one()
    return count


def distinct_ids(engine: Engine, tenant: str) -> int:
    with engine.connect() as connection:
        count: int = connection.execute(
            sa.text("SELECT count(DISTINCT message_id) FROM messages WHERE tenant = :tenant"),
            {"tenant": tenant},
        ).scalar_one()
    return count


@contextmanager
def private_redis(log_dir: Path, name: str, flags: list[str]) -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port (its files under ``log_dir``);
    yields its URL (database 0) and stops and removes it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError(f"redis-server is not installed (needed for {name})")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workdir = log_dir / f"{name}-{port}"
    workdir.mkdir(parents=True, exist_ok=True)
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--dir", str(workdir), *flags]
    process = processes.start(command, log_path=log_dir / f"{name}-redis.log")
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not processes.redis_answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the private {name} redis-server did not start")
            time.sleep(0.05)
        yield url
    finally:
        processes.stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
