"""Conversation state: dirty tracking, versions, read-through, the drainer's exactly-once
apply, history, per-kind TTLs, the task stack and schema versions."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from pydantic import BaseModel

from config.settings import Settings
from core.client import MemoryClient, redis_from_url
from core.errors import ConfigurationError, ConflictError, TransientError, ValidationError
from core.log import deadletters
from core.log.drainer import Drainer
from core.state.model import StateSchema
from core.store.db import make_engine
from core.store.scripts import lua_source
from tests.conftest import SettingsFactory, both_backends
from tests.helpers.private_redis import PrivateRedis


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def durable_state(url: str, session: str = "s", tenant: str = "default") -> tuple[Any, int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        row = connection.execute(
            sa.text(
                "SELECT state, state_version FROM sessions WHERE tenant = :t AND session_id = :s"
            ),
            {"t": tenant, "s": session},
        ).first()
    engine.dispose()
    assert row is not None
    state = row[0] if isinstance(row[0], dict) else json.loads(row[0])
    return state, int(row[1])


def history_versions(url: str, session: str = "s") -> list[int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        found = [
            int(v)
            for (v,) in connection.execute(
                sa.text("SELECT version FROM state_history WHERE session_id = :s ORDER BY version"),
                {"s": session},
            )
        ]
    engine.dispose()
    return found


def test_save_sends_nothing_unchanged_and_only_the_changed_field(
    settings: Settings, tmp_path: Path
) -> None:
    """Acceptance: save() of an unchanged state is zero Redis commands; of one changed field,
    one EVALSHA that carries that field and nothing of the others."""
    server = PrivateRedis(tmp_path / "redis", appendonly=False)
    server.start()
    try:
        client = MemoryClient(redis=redis_from_url(server.url()), settings=settings)
        state = client.state("s")
        state.context = {"lang": "fr", "secret-context": "C" * 50}
        state.data = {"plan": "gold-data-value"}
        state.save()
        state = client.state("s")
        client.redis.config_resetstat()
        assert state.save() == 1  # unchanged: nothing to send
        calls = _commandstats(client.redis)
        calls.pop("info", None)
        calls.pop("config|resetstat", None)
        assert calls == {}

        state.temp["step"] = 3  # one field, changed in place
        watcher = redis.Redis(port=server.port)
        with watcher.monitor() as monitor:
            client.redis.config_resetstat()
            assert state.save() == 2
            calls = _commandstats(client.redis)
            marker = "end-of-save"
            client.redis.echo(marker)
            lines = []
            for command in monitor.listen():
                if marker in command["command"]:
                    break
                lines.append(command["command"])
        calls.pop("info", None)
        calls.pop("config|resetstat", None)
        assert calls.pop("evalsha") == 1
        assert set(calls) <= set(
            re.findall(r"redis\.call\('(\w+)'", lua_source("state_patch").lower())
        )
        [evalsha] = [line for line in lines if line.startswith("EVALSHA")]
        assert ' 1 temp {"step":3}' in evalsha  # one change: the temp field
        assert "secret-context" not in evalsha and "gold-data-value" not in evalsha
        client.close()
    finally:
        server.stop()


@both_backends
def test_state_round_trip_history_and_read_through(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    state = client.state("s")
    assert (state.version, state.data, state.tasks, state.subject) == (0, {}, [], None)
    state.subject = "refund for order 1042"
    state.data = {"order": 1042}
    state.context["lang"] = "de"
    assert state.save(actor="agent-1") == 1
    state.data["order"] = 1043
    assert state.save(actor="agent-2") == 2
    assert client.state("s").data == {"order": 1043}  # read-your-writes before any drain
    assert drainer.flush(timeout_s=30) == 0
    stored, version = durable_state(database_url)
    assert version == 2
    assert stored["data"] == {"order": 1043} and stored["subject"] == "refund for order 1042"
    assert stored["context"] == {"lang": "de"}
    changes = client.state_history("s")
    assert [(c.version, c.prev_version, c.actor) for c in changes] == [
        (2, 1, "agent-2"),
        (1, 0, "agent-1"),
    ]
    assert changes[0].fields == ["data"] and changes[0].changes == {"data": {"order": 1043}}
    assert sorted(changes[1].fields) == ["context", "data", "subject"]

    # Redis forgets everything: the store answers with its version and Redis is re-warmed.
    client.redis.flushdb()
    fresh = MemoryClient(redis=client.redis, settings=client.settings, engine=client.engine)
    again = fresh.state("s")
    assert (again.version, again.level, again.data) == (2, "durable", {"order": 1043})
    assert again.context == {"lang": "de"}
    assert fresh.state("s").level in ("local", "redis")
    assert fresh.update_state("s", lambda d: {**d, "n": 1}) == 3  # continues, never reuses


def test_a_stale_save_is_a_conflict_and_changes_nothing(client: MemoryClient) -> None:
    first, second = client.state("s"), client.state("s")
    first.data["a"] = 1
    first.save()
    second.data["b"] = 2
    with pytest.raises(ConflictError) as caught:
        second.save()
    assert caught.value.current_version == 1
    assert client.state("s").data == {"a": 1}
    second.reload().data["b"] = 2
    assert second.save() == 2
    assert client.state("s").data == {"a": 1, "b": 2}


def test_eight_threads_update_one_counter_without_losing_one(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    """Acceptance: 8 threads x 1,000 increments: 8,000, and 8,000 contiguous versions."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(1000):
                client.update_state("s", lambda d: {**d, "n": d.get("n", 0) + 1}, actor="t")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.state("s").data == {"n": 8000}
    assert drainer.flush(timeout_s=120) == 0
    stored, version = durable_state(database_url)
    assert stored["data"] == {"n": 8000} and version == 8000
    assert history_versions(database_url) == list(range(1, 8001))


def test_update_state_gives_up_with_conflict_error_after_the_bound(
    make_settings: SettingsFactory, redis_client: redis.Redis
) -> None:
    client = MemoryClient(redis=redis_client, settings=make_settings(state_update_retries=2))
    other = MemoryClient(redis=redis_client, settings=client.settings)
    calls = []

    def always_loses(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        other.update_state("s", lambda d: {**d, "other": d.get("other", 0) + 1})
        return {**data, "mine": True}

    with pytest.raises(ConflictError, match="3 attempts"):
        client.update_state("s", always_loses)
    assert len(calls) == 3
    assert "mine" not in client.state("s").data


def test_bad_fields_are_refused_by_name_and_change_nothing(client: MemoryClient) -> None:
    state = client.state("s")
    state.data = {"ok": 1}
    state.save()
    state.context = ["not", "an", "object"]  # type: ignore[assignment]
    with pytest.raises(ValidationError) as caught:
        state.save()
    assert caught.value.field == "context"
    state = client.state("s")
    state.temp = {"big": "x" * (client.settings.state_max_field_bytes + 1)}
    with pytest.raises(ValidationError, match="MEMSCRIBE_STATE_MAX_FIELD_BYTES") as caught:
        state.save()
    assert caught.value.field == "temp"
    with pytest.raises(ValidationError):
        client.update_state("s", lambda d: {"set": {1, 2}})
    assert client.state("s").version == 1
    with pytest.raises(ValidationError) as caught:
        client.state("bad id!")
    assert caught.value.field == "session_id"


def test_task_stack_moves_and_bounds(client: MemoryClient) -> None:
    state = client.state("s")
    task = state.push_task("book a flight", ["pick dates", "pick seat"])
    assert state.current_task == task and task["status"] == "pending"
    state.set_checkpoint_status(task["id"], "1", "in_progress")
    assert task["status"] == "in_progress"
    state.set_checkpoint_status(task["id"], "1", "evaluating")
    state.set_checkpoint_status(task["id"], "1", "complete")
    state.set_checkpoint_status(task["id"], "2", "complete")
    assert task["status"] == "complete" and state.current_task is None
    with pytest.raises(ValidationError, match="cannot go from complete"):
        state.set_task_status(task["id"], "in_progress")
    second = state.push_task("refund", [])
    state.set_task_status(second["id"], "paused")
    state.set_task_status(second["id"], "in_progress")
    state.save()
    loaded = client.state("s")
    assert [t["title"] for t in loaded.tasks] == ["book a flight", "refund"]
    limit = client.settings.state_max_tasks
    for i in range(limit - 2):
        loaded.push_task(f"t{i}")
    with pytest.raises(ValidationError, match="MEMSCRIBE_STATE_MAX_TASKS"):
        loaded.push_task("one too many")
    with pytest.raises(ValidationError, match="MEMSCRIBE_STATE_MAX_CHECKPOINTS"):
        loaded.pop_task()
        loaded.push_task(
            "long", [f"c{i}" for i in range(client.settings.state_max_checkpoints + 1)]
        )
    loaded.tasks.append({"id": "x", "status": "done?"})
    with pytest.raises(ValidationError) as caught:
        loaded.save()
    assert caught.value.field.startswith("tasks[")


def test_a_kind_that_expired_is_read_back_from_the_store(
    make_settings: SettingsFactory, redis_client: redis.Redis, database_url: str
) -> None:
    settings = make_settings(state_evaluation_ttl_s=1)
    client = MemoryClient(redis=redis_client, settings=settings)
    drainer = Drainer(redis=redis_client, engine=client.engine, settings=settings)
    state = client.state("s")
    state.evaluation = {"checkpoint": "1", "score": 0.5}
    state.data = {"a": 1}
    state.save()
    assert drainer.flush(timeout_s=30) == 0
    keys = client.keys.state("default", "s")
    deadline = time.monotonic() + 5
    while redis_client.exists(keys.evaluation) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis_client.exists(keys.evaluation)
    other = MemoryClient(redis=redis_client, settings=settings, engine=client.engine)
    found = other.state("s")
    assert found.level == "durable" and found.evaluation == {"checkpoint": "1", "score": 0.5}
    assert redis_client.exists(keys.evaluation)  # re-warmed


def test_an_expired_kind_is_never_read_from_a_store_that_is_behind(
    make_settings: SettingsFactory, redis_client: redis.Redis
) -> None:
    """The kind expired while its change is still in the WAL: no stale value, a retryable
    error instead."""
    settings = make_settings(state_evaluation_ttl_s=1)
    client = MemoryClient(redis=redis_client, settings=settings)
    state = client.state("s")
    state.evaluation = {"score": 1}
    state.save()
    redis_client.delete(client.keys.state("default", "s").evaluation)  # as the TTL would
    with pytest.raises(TransientError, match="behind"):
        MemoryClient(redis=redis_client, settings=settings).state("s")


def test_restore_never_overwrites_a_newer_version(client: MemoryClient) -> None:
    client.update_state("s", lambda d: {"n": 1})
    client.update_state("s", lambda d: {"n": 2})
    keys = client.keys.state("default", "s")
    client.redis.delete(keys.main)  # Redis lost the state; its patches are still in the WAL
    with pytest.raises(TransientError, match="behind version 2"):
        MemoryClient(redis=client.redis, settings=client.settings).state("s")
    with pytest.raises(TransientError, match="behind version 2"):
        client.update_state("s", lambda d: {"n": 3})


class OrderV1(BaseModel):
    name: str


class OrderV2(BaseModel):
    first: str
    last: str
    items: int = 0


def split_name(data: dict[str, Any]) -> dict[str, Any]:
    first, _, last = data.pop("name").partition(" ")
    return {**data, "first": first, "last": last}


def test_schema_versions_migrate_old_state_and_validate_new(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    old = MemoryClient(
        redis=client.redis, settings=client.settings, state_schema=StateSchema(OrderV1, 1)
    )
    old.update_state("s", lambda d: {"name": "Ada Lovelace"})
    new = MemoryClient(
        redis=client.redis,
        settings=client.settings,
        state_schema=StateSchema(OrderV2, 2, {1: split_name}),
    )
    state = new.state("s")
    assert state.data == {"first": "Ada", "last": "Lovelace", "items": 0}
    assert state.dirty_fields() == ["data"]  # the migrated data is written back
    assert state.save() == 2
    assert new.update_state("s", lambda d: {**d, "items": d["items"] + 1}) == 3
    with pytest.raises(ValidationError) as caught:
        new.update_state("s", lambda d: {**d, "items": "many"})
    assert caught.value.field == "data.items"
    with pytest.raises(ConfigurationError, match="schema version 2"):
        old.state("s")
    with pytest.raises(ConfigurationError, match="needs migrations"):
        StateSchema(OrderV2, 3, {1: split_name})
    assert drainer.flush(timeout_s=30) == 0
    stored, version = durable_state(database_url)
    assert version == 3 and stored["_schema"] == 2
    assert stored["data"] == {"first": "Ada", "last": "Lovelace", "items": 1}


def test_inspect_state_and_stats(client: MemoryClient, drainer: Drainer) -> None:
    client.update_state("s", lambda d: {"n": 1}, actor="me")
    client.put_result("s", {"answer": 42})
    assert drainer.flush(timeout_s=30) == 0
    report = client.inspect_state("s")
    assert report["version"] == 1 and report["versions"]["durable"] == 1
    assert report["versions"]["wal_newest_not_durable"] is None
    assert report["fields"]["data"]["value"] == {"n": 1}
    assert report["fields"]["evaluation"]["kind"] == "evaluation"
    assert report["results"] == {"unconsumed": 1, "consumed_retained": 0}
    assert report["recent_changes"][0]["actor"] == "me"
    stats = client.state_stats()
    assert stats["reads"] >= 2 and stats["writes"] == 1 and stats["breaker"] == "closed"
    assert 0 < stats["hit_rate"] <= 1


def test_a_dead_lettered_patch_is_listed_without_content_and_replays_into_place(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    """A patch the store rejects is isolated (the versions after it land), listed by ids only,
    and a replay after the fix fills in what no later version changed."""
    engine = make_engine(pg_database)
    rule = (
        "ALTER TABLE state_history ADD CONSTRAINT no_poison "
        "CHECK (changes::text NOT LIKE '%POISON%')"
    )
    with engine.begin() as connection:
        connection.execute(sa.text(rule))
    try:
        client.update_state("s", lambda d: {"n": 1})
        state = client.state("s")
        state.context = {"note": "POISON secret-words"}
        state.save()
        client.update_state("s", lambda d: {"n": 3})
        assert drainer.flush(timeout_s=30) == 0
        [letter] = deadletters.list_dead_letters(client.redis, client.keys)
        assert letter.detail["kind"] == "st" and letter.detail["version"] == "2"
        assert "secret-words" not in json.dumps(letter.detail) + letter.error
        assert history_versions(pg_database) == [1, 3]
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE state_history DROP CONSTRAINT no_poison"))
        assert deadletters.replay_wal(client.redis, client.keys, client.scripts, letter.id)
        assert drainer.flush(timeout_s=30) == 0
        assert history_versions(pg_database) == [1, 2, 3]
        stored, version = durable_state(pg_database)
        assert version == 3 and stored["data"] == {"n": 3}
        assert stored["context"] == {"note": "POISON secret-words"}
    finally:
        with engine.begin() as connection:
            connection.execute(
                sa.text("ALTER TABLE state_history DROP CONSTRAINT IF EXISTS no_poison")
            )
        engine.dispose()


def test_a_local_copy_is_never_served_after_another_client_wrote(client: MemoryClient) -> None:
    """Two clients (two local levels, as two processes have): once B's write returned, A's
    next read is B's version, never A's local copy."""
    other = MemoryClient(redis=client.redis, settings=client.settings, engine=client.engine)
    client.update_state("s", lambda d: {"n": 1})
    assert client.state("s").level == "local"
    for n in range(2, 6):
        other.update_state("s", lambda d, n=n: {"n": n})
        seen = client.state("s")
        assert (seen.data, seen.version, seen.level) == ({"n": n}, n, "redis")
