"""Fault: update_state from many threads while persist workers are killed with SIGKILL, and
while PostgreSQL is cut off. Set check: every version acknowledged to a writer is in the store
exactly once, in order (``state_history`` holds 1..n, each with prev_version n - 1 and its
writer as actor), and the data in Redis and in ``sessions.state`` is the sum of every
increment: none lost, none applied twice."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import Settings
from core.client import MemoryClient
from core.errors import BackpressureError
from core.store.db import make_engine
from tests.chaos.load import wait_until_durable
from tests.helpers.tcp_proxy import TcpProxy
from worker import processes

Spawn = Callable[..., subprocess.Popen[bytes]]
# session -> {version: actor}, as acknowledged by update_state
Acknowledged = dict[str, dict[int, str]]

KILL_THREADS = 8
KILL_PER_THREAD = 1000
KILLS = 3
KILL_AFTER_DRAIN_S = 0.3  # a worker is killed this long after its first commit: mid-drain
KILL_PAUSE_S = 0.02  # 1,000 updates take > 20 s per thread: the load outlasts the kills

OUTAGE_THREADS = 4
OUTAGE_PER_THREAD = 500
OUTAGE_SESSIONS = ("s0", "s1")
OUTAGE_BEFORE_S = 2
OUTAGE_S = 6
OUTAGE_PAUSE_S = 0.02  # 500 updates take > 10 s per thread: the load outlasts the outage


def _increment(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "n": data.get("n", 0) + 1}


class Updaters:
    """Threads each doing ``per_thread`` increments, round robin over ``sessions``.

    Only ``BackpressureError`` is retried: it is raised before anything is written. Any other
    error is ambiguous (the patch may have landed), and retrying it could increment twice, so
    it stops the thread and fails the test."""

    def __init__(
        self,
        client: MemoryClient,
        *,
        threads: int,
        per_thread: int,
        sessions: tuple[str, ...],
        pause_s: float,
    ) -> None:
        self.client = client
        self.per_thread = per_thread
        self.sessions = sessions
        self.pause_s = pause_s
        self.acknowledged: Acknowledged = {session: {} for session in sessions}
        self.duplicates: list[tuple[str, int]] = []
        self.errors: list[str] = []
        self.backpressured = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(threads)
        ]

    def __enter__(self) -> Updaters:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        # On the way out of a failed test too: no thread of this test writes into the next.
        self._stop.set()
        self.join(timeout_s=30)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def count(self) -> int:
        with self._lock:
            return sum(len(versions) for versions in self.acknowledged.values())

    def _run(self, index: int) -> None:
        actor = f"t{index}"
        for i in range(self.per_thread):
            if self._stop.is_set():
                return
            session = self.sessions[(i + index) % len(self.sessions)]
            while True:
                try:
                    version = self.client.update_state(session, _increment, actor=actor)
                    break
                except BackpressureError:
                    with self._lock:
                        self.backpressured += 1
                    time.sleep(0.05)
                except Exception as exc:  # ambiguous: the patch may have been written
                    with self._lock:
                        self.errors.append(f"{actor} update {i} on {session}: {exc!r}")
                    return
            with self._lock:
                if version in self.acknowledged[session]:
                    self.duplicates.append((session, version))
                self.acknowledged[session][version] = actor
            time.sleep(self.pause_s)


def _durable_version(database_url: str, session: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            version = connection.execute(
                sa.text("SELECT state_version FROM sessions WHERE session_id = :s"), {"s": session}
            ).scalar()
    finally:
        engine.dispose()
    return int(version or 0)


def _wait_for_drain(database_url: str, session: str, *, after: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while _durable_version(database_url, session) <= after:
        assert time.monotonic() < deadline, f"no drain past version {after} in {timeout_s} s"
        time.sleep(0.1)


def _assert_no_version_lost(
    client: MemoryClient, settings: Settings, database_url: str, load: Updaters
) -> None:
    """Redis, ``sessions`` and ``state_history`` all hold exactly the acknowledged versions."""
    assert load.errors == []
    assert load.duplicates == []
    expected = load.per_thread * len(load._threads) // len(load.sessions)
    for session, versions in load.acknowledged.items():
        assert sorted(versions) == list(range(1, expected + 1)), f"{session}: versions acked"

    # Redis, through a client with nothing cached locally.
    fresh = MemoryClient(redis=client.redis, settings=settings)
    for session in load.sessions:
        state = fresh.state(session)
        assert state.data == {"n": expected}, f"{session}: Redis data"
        assert state.version == expected, f"{session}: Redis version"
        raw = client.redis.hget(client.keys.state("default", session).main, "v")
        assert raw is not None and int(raw) == expected, f"{session}: Redis state hash"
    if fresh._engine is not None:
        fresh._engine.dispose()

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            stored = {
                row.session_id: row
                for row in connection.execute(
                    sa.text(
                        "SELECT session_id, (state->'data'->>'n')::bigint AS n, state_version "
                        "FROM sessions WHERE tenant = 'default'"
                    )
                )
            }
            history = connection.execute(
                sa.text(
                    "SELECT session_id, version, prev_version, actor, "
                    "(changes->'data'->>'n')::bigint AS n "
                    "FROM state_history WHERE tenant = 'default' ORDER BY session_id, version"
                )
            ).all()
    finally:
        engine.dispose()
    assert set(stored) == set(load.sessions), stored
    for session in load.sessions:
        assert (stored[session].n, stored[session].state_version) == (expected, expected), (
            f"{session}: sessions row"
        )
        rows = [row for row in history if row.session_id == session]
        in_history = [row.version for row in rows]
        assert len(in_history) == len(set(in_history)), f"{session}: a version twice in history"
        assert in_history == list(range(1, expected + 1)), f"{session}: history not 1..{expected}"
        assert all(row.prev_version == row.version - 1 for row in rows)
        # Version k is the k-th increment, by the writer it was acknowledged to.
        assert all(row.n == row.version for row in rows), f"{session}: history data"
        assert {row.version: row.actor for row in rows} == load.acknowledged[session]


@pytest.fixture
def chaos_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        drain_lease_ms=500, flush_interval_s=0.2, flush_budget_s=0.5, batch_size=200
    )


def test_sigkilled_workers_lose_no_state_version(
    redis_client: redis.Redis,
    chaos_settings: Settings,
    spawn: Spawn,
    pg_database: str,
) -> None:
    client = MemoryClient(redis=redis_client, settings=chaos_settings)
    spawn(processes.beat_command(loglevel="WARNING"), settings=chaos_settings, name="beat")
    with Updaters(
        client,
        threads=KILL_THREADS,
        per_thread=KILL_PER_THREAD,
        sessions=("s",),
        pause_s=KILL_PAUSE_S,
    ) as load:
        at_kill: list[tuple[int, int]] = []  # (acknowledged, durable) when each worker died
        for kill in range(KILLS):
            worker = spawn(
                processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
                settings=chaos_settings,
                name=f"worker-{kill}",
            )
            # Start-up takes seconds on a busy machine: kill once this worker has committed.
            _wait_for_drain(pg_database, "s", after=_durable_version(pg_database, "s"))
            time.sleep(KILL_AFTER_DRAIN_S)
            processes.kill(worker)
            at_kill.append((load.count(), _durable_version(pg_database, "s")))
        # The killed workers were draining (the store moved on) while updates were coming in.
        assert at_kill[-1][1] > 0
        assert load.running(), "the load ended before the last kill: nothing was killed mid-run"
        load.join(timeout_s=60)
    assert not load.running()
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
        settings=chaos_settings,
        name="worker-final",
    )
    assert wait_until_durable(client, timeout_s=60) == 0
    _assert_no_version_lost(client, chaos_settings, pg_database, load)
    print(
        f"\nupdate_state x{load.count()} on one session through kill -9 x{KILLS} "
        f"(acknowledged, durable at the kills: {at_kill}, backpressured {load.backpressured}): "
        "lost=0 doubled=0"
    )


@pytest.fixture
def proxy(pg_database: str) -> Iterator[TcpProxy]:
    url = make_url(pg_database)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.close()


def test_postgres_outage_loses_no_state_version(
    redis_client: redis.Redis,
    make_settings: Callable[..., Settings],
    proxy: TcpProxy,
    pg_database: str,
    spawn: Spawn,
) -> None:
    through_proxy = make_url(pg_database).set(port=proxy.port).render_as_string(hide_password=False)
    settings = make_settings(
        database_url=through_proxy,
        store_backoff_base_ms=200,
        store_backoff_cap_s=2,
        flush_interval_s=0.5,
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    spawn(
        processes.worker_command(["persist"], concurrency=2, loglevel="WARNING"),
        settings=settings,
        name="worker",
    )
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")

    with Updaters(
        client,
        threads=OUTAGE_THREADS,
        per_thread=OUTAGE_PER_THREAD,
        sessions=OUTAGE_SESSIONS,
        pause_s=OUTAGE_PAUSE_S,
    ) as load:
        time.sleep(OUTAGE_BEFORE_S)
        before = load.count()
        proxy.cut()
        time.sleep(OUTAGE_S)
        during = load.count() - before
        still_running = load.running()
        proxy.restore()
        load.join(timeout_s=60)
    assert not load.running()
    assert still_running, "the load ended before the outage did"
    # Updates went on against Redis alone, and the drainers did try the store meanwhile.
    assert load.errors == []
    assert during > 100
    assert proxy.refused_at
    assert wait_until_durable(client, timeout_s=60) == 0
    _assert_no_version_lost(client, settings, pg_database, load)
    print(
        f"\nupdate_state x{load.count()} on {len(OUTAGE_SESSIONS)} sessions through a "
        f"{OUTAGE_S}s postgres outage ({during} during it, backpressured "
        f"{load.backpressured}): lost=0 doubled=0"
    )
