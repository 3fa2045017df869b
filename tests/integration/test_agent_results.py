"""Agent results: put by one agent, taken exactly once by another (``put_result`` /
``take_unconsumed``): order, idempotent puts, retention of consumed ones in Redis, refused
input, the drain into ``agent_results`` and the restore from it, and four taker processes
sharing 10,000 results."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from core.client import MemoryClient
from core.errors import ValidationError
from core.log.drainer import Drainer
from core.state.results import MAX_TAKE
from core.store.db import make_engine
from tests.conftest import SettingsFactory
from tests.helpers.redis_state import redis_snapshot

Spawn = Callable[..., subprocess.Popen[bytes]]


def stored_results(url: str, session: str = "s") -> dict[str, tuple[int, Any, bool]]:
    """result_id -> (position, result, consumed) as agent_results holds them."""
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT result_id, position, result, consumed_at FROM agent_results "
                "WHERE tenant = 'default' AND session_id = :s"
            ),
            {"s": session},
        ).all()
    engine.dispose()
    return {r.result_id: (int(r.position), r.result, r.consumed_at is not None) for r in rows}


@pytest.fixture
def retained_client(
    make_settings: SettingsFactory, redis_client: redis.Redis, pg_database: str
) -> MemoryClient:
    return MemoryClient(redis=redis_client, settings=make_settings(state_results_retention=5))


def test_results_are_taken_oldest_first_once_and_puts_are_idempotent(
    retained_client: MemoryClient,
) -> None:
    client = retained_client
    ids = [client.put_result("s", {"n": n}, result_id=f"r{n}") for n in range(8)]
    assert ids == [f"r{n}" for n in range(8)]
    # Same id again: nothing new (not even a changed payload), the id comes back.
    assert client.put_result("s", {"n": "other"}, result_id="r3") == "r3"
    generated = client.put_result("s", ["no", "id"])
    assert generated and generated not in ids

    first = client.take_unconsumed("s", limit=3)
    assert [r.result_id for r in first] == ["r0", "r1", "r2"]
    assert [r.position for r in first] == [1, 2, 3]
    assert [r.result for r in first] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert all(r.consumed and r.consumed_ms is not None for r in first)
    assert all(r.created_ms <= (r.consumed_ms or 0) for r in first)

    rest = client.take_unconsumed("s", limit=100)
    assert [r.result_id for r in rest] == [*(f"r{n}" for n in range(3, 8)), generated]
    assert rest[0].result == {"n": 3}  # the duplicate put changed nothing
    assert rest[-1].result == ["no", "id"] and rest[-1].position == 9
    assert client.take_unconsumed("s") == []
    # Consumed: a put of a retained id is still a duplicate, not a new result.
    assert client.put_result("s", {"n": 7}, result_id="r7") == "r7"
    assert client.take_unconsumed("s") == []


def test_only_the_newest_retention_consumed_results_stay_in_redis(
    retained_client: MemoryClient,
) -> None:
    client = retained_client
    keys = client.keys.state("default", "s")
    for n in range(8):
        client.put_result("s", {"n": n}, result_id=f"r{n}")
    client.take_unconsumed("s", limit=3)
    assert client.redis.lrange(keys.consumed, 0, -1) == ["r2", "r1", "r0"]
    client.take_unconsumed("s", limit=4)
    newest = ["r6", "r5", "r4", "r3", "r2"]
    # The older ids stay listed (without records), so a repeated put is recognised.
    assert client.redis.lrange(keys.consumed, 0, -1) == [*newest, "r1", "r0"]
    held = {str(field) for field in client.redis.hgetall(keys.results)}
    assert {k for k in held if k.startswith("r")} == {*newest, "r7"}
    assert {k for k in held if k.startswith("c:")} == {f"c:{i}" for i in newest}
    unconsumed, consumed = client._results.listing(keys)
    assert [r.result_id for r in unconsumed] == ["r7"]
    assert [r.result_id for r in consumed] == newest and all(r.consumed for r in consumed)
    assert client.inspect_state("s")["results"] == {"unconsumed": 1, "consumed_retained": 5}


def test_bad_input_is_refused_by_name_and_writes_nothing(client: MemoryClient) -> None:
    client.put_result("s", {"ok": 1}, result_id="r0")
    before = redis_snapshot(client.redis)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("result", lambda: client.put_result("s", {1, 2})),
        ("result", lambda: client.put_result("s", object())),
        ("result", lambda: client.put_result("s", {"k": b"bytes"})),
        ("result", lambda: client.put_result("s", "x" * client.settings.max_result_bytes)),
        ("result_id", lambda: client.put_result("s", {}, result_id="bad id!")),
        ("session_id", lambda: client.put_result("bad id!", {})),
        ("tenant", lambda: client.put_result("s", {}, tenant="bad tenant!")),
        ("limit", lambda: client.take_unconsumed("s", limit=0)),
        ("limit", lambda: client.take_unconsumed("s", limit=MAX_TAKE + 1)),
        ("limit", lambda: client.take_unconsumed("s", limit=True)),
        ("limit", lambda: client.take_unconsumed("s", limit="5")),  # type: ignore[arg-type]
        ("limit", lambda: client.take_unconsumed("s", limit=2.0)),  # type: ignore[arg-type]
    ]
    for field, call in cases:
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.field == field, (field, caught.value)
    with pytest.raises(ValidationError, match="MEMSCRIBE_MAX_RESULT_BYTES"):
        client.put_result("s", "x" * client.settings.max_result_bytes)
    assert redis_snapshot(client.redis) == before
    # Just under the limit is fine ('"' + payload + '"').
    client.put_result("s", "x" * (client.settings.max_result_bytes - 2), result_id="r1")
    assert [r.result_id for r in client.take_unconsumed("s")] == ["r0", "r1"]


def test_drain_stores_every_result_and_a_flushed_redis_restores_the_unconsumed(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    for n in range(6):
        client.put_result("s", {"n": n}, result_id=f"r{n}")
    taken = client.take_unconsumed("s", limit=2)
    assert [r.result_id for r in taken] == ["r0", "r1"]
    assert drainer.flush(timeout_s=30) == 0
    stored = stored_results(database_url)
    assert stored == {
        f"r{n}": (n + 1, {"n": n}, n < 2)  # consumed_at set for the two taken
        for n in range(6)
    }

    client.redis.flushdb()
    fresh = MemoryClient(redis=client.redis, settings=client.settings, engine=client.engine)
    again = fresh.take_unconsumed("s", limit=3)
    assert [(r.result_id, r.position, r.result) for r in again] == [
        ("r2", 3, {"n": 2}),
        ("r3", 4, {"n": 3}),
        ("r4", 5, {"n": 4}),
    ]
    # A put after the restore continues the positions; consumed ones never come back.
    assert fresh.put_result("s", {"n": 6}, result_id="r6") == "r6"
    assert fresh.put_result("s", {"n": 0}, result_id="r0") == "r0"  # restored as consumed
    rest = fresh.take_unconsumed("s", limit=100)
    assert [(r.result_id, r.position) for r in rest] == [("r5", 6), ("r6", 7)]
    assert fresh.take_unconsumed("s") == []
    assert drainer.flush(timeout_s=30) == 0
    stored = stored_results(database_url)
    assert set(stored) == {f"r{n}" for n in range(7)}
    assert all(consumed for _, _, consumed in stored.values())

    # Restored into a second flush: nothing unconsumed is left to hand out.
    client.redis.flushdb()
    third = MemoryClient(redis=client.redis, settings=client.settings, engine=client.engine)
    assert third.take_unconsumed("s", limit=MAX_TAKE) == []


@pytest.mark.timeout(300)
def test_four_processes_take_10000_results_each_exactly_once(
    make_settings: SettingsFactory,
    redis_client: redis.Redis,
    pg_database: str,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    """Acceptance: fetch unconsumed from 4 processes over 10,000 results: each consumed
    exactly once."""
    total, takers = 10_000, 4
    settings = make_settings(state_results_max_unconsumed=20_000)
    client = MemoryClient(redis=redis_client, settings=settings)
    put = [f"r{n}" for n in range(total)]
    for n, result_id in enumerate(put):
        client.put_result("s", {"n": n}, result_id=result_id)
    keys = client.keys.state("default", "s")
    assert redis_client.llen(keys.unconsumed) == total

    go = tmp_path / "go"
    outputs = [tmp_path / f"taker{i}.ids" for i in range(takers)]
    ready = [tmp_path / f"taker{i}.ready" for i in range(takers)]
    processes = [
        spawn(
            [sys.executable, "-m", "tests.helpers.result_taker", "s", str(out), str(rdy), str(go)],
            settings=settings,
            name=f"taker{i}",
        )
        for i, (out, rdy) in enumerate(zip(outputs, ready, strict=True))
    ]
    deadline = time.monotonic() + 60
    while not all(path.exists() for path in ready):
        assert all(p.poll() is None for p in processes), "a taker died before starting"
        assert time.monotonic() < deadline, "takers not ready within 60 s"
        time.sleep(0.02)
    go.touch()  # all four start taking at once
    for i, process in enumerate(processes):
        assert process.wait(timeout=120) == 0, (tmp_path / f"taker{i}.log").read_text()

    per_taker = [out.read_text().split() for out in outputs]
    # They raced: the work was shared (each take is 50 of 200 batches).
    assert sum(1 for ids in per_taker if ids) >= 2, [len(ids) for ids in per_taker]
    got = [result_id for ids in per_taker for result_id in ids]
    twice = [result_id for result_id, count in Counter(got).items() if count > 1]
    assert twice == [], f"{len(twice)} results taken more than once"
    assert set(got) == set(put) and len(got) == total
    assert client.take_unconsumed("s") == []

    drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
    assert drainer.flush(timeout_s=180) == 0
    engine = make_engine(pg_database)
    with engine.connect() as connection:
        rows, consumed, distinct = connection.execute(
            sa.text(
                "SELECT count(*), count(consumed_at), count(DISTINCT result_id) "
                "FROM agent_results WHERE tenant = 'default' AND session_id = 's'"
            )
        ).one()
    engine.dispose()
    client.close()
    assert (rows, consumed, distinct) == (total, total, total)


def test_a_put_of_a_consumed_id_past_retention_is_still_a_duplicate(
    retained_client: MemoryClient,
) -> None:
    client = retained_client
    for n in range(7):
        client.put_result("s", {"n": n}, result_id=f"r{n}")
    assert len(client.take_unconsumed("s", limit=7)) == 7  # r0, r1 trimmed (retention 5)
    assert client.put_result("s", {"n": 0}, result_id="r0") == "r0"
    assert client.take_unconsumed("s") == []  # r0 was consumed once already


def test_a_result_with_nan_is_refused(client: MemoryClient) -> None:
    before = redis_snapshot(client.redis)
    with pytest.raises(ValidationError) as caught:
        client.put_result("s", {"score": float("nan")})
    assert caught.value.field == "result"
    assert redis_snapshot(client.redis) == before
