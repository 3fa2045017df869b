"""The append path: one Redis call, seq, the bounded buffer, idempotent retries."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from config.settings import Settings
from core.client import MemoryClient, redis_from_url
from core.errors import ValidationError
from core.store.scripts import lua_source
from tests.helpers.private_redis import PrivateRedis


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_append_is_exactly_one_evalsha(settings: Settings, tmp_path: Path) -> None:
    """P1: each append sends one EVALSHA; every other command counted ran inside the script."""
    # commandstats is server-wide: a private server keeps other clients out of the count.
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        _count_append_commands(MemoryClient(redis=redis_from_url(server.url()), settings=settings))
    finally:
        server.stop()


def _count_append_commands(client: MemoryClient) -> None:
    for i in range(5):  # the first append of a session is the cold path (two calls)
        client.append(f"s-{i}", "user", "opens the pooled connection and the session")
    client.redis.config_resetstat()
    for i in range(50):
        client.append(f"s-{i % 5}", "user" if i % 2 else "assistant", f"message {i}")
    calls = _commandstats(client.redis)
    calls.pop("info", None)  # the INFO that reads these counters
    calls.pop("config|resetstat", None)  # the reset itself is counted
    assert calls.pop("evalsha") == 50
    # commandstats also counts the commands a script runs; those are the only others allowed.
    assert set(calls) <= set(re.findall(r"redis\.call\('(\w+)'", lua_source("append").lower()))
    assert calls["xadd"] == 50


def test_monitor_sees_one_client_command_per_append(client: MemoryClient) -> None:
    """P1, seen from the server: MONITOR shows one EVALSHA per append from the client socket."""
    for i in range(3):  # warm sessions: a session's first append is the cold path
        client.append(f"s-{i}", "user", "opens the pooled connection and the session")
    marker = f"end-{os.getpid()}"
    watcher = redis.Redis(
        connection_pool=redis.ConnectionPool(**client.redis.connection_pool.connection_kwargs)
    )
    with watcher.monitor() as monitor:
        for i in range(20):
            client.append(f"s-{i % 3}", "user", f"message {i}")
        client.redis.echo(marker)
        seen = []
        while True:
            command = monitor.next_command()
            if marker in command["command"]:
                appender = command["client_address"], command["client_port"]
                break
            seen.append(command)
    watcher.close()
    # Only the appending connection counts (the MONITOR connection's handshake shows up too).
    from_client = [
        c["command"].split()[0].upper()
        for c in seen
        if c["client_type"] != "lua" and (c["client_address"], c["client_port"]) == appender
    ]
    assert from_client == ["EVALSHA"] * 20


def test_seq_counts_up_per_session(client: MemoryClient) -> None:
    """seq is 1..n per session, independent across sessions and tenants."""
    seqs = [client.append("a", "user", "x").seq for _ in range(3)]
    assert seqs == [1, 2, 3]
    assert client.append("b", "user", "x").seq == 1
    assert client.append("a", "user", "x", tenant="other").seq == 1
    assert client.append("a", "user", "x").seq == 4


def test_retry_with_same_message_id_is_a_no_op(client: MemoryClient) -> None:
    """A retried append returns the original seq and writes nothing."""
    first = client.append("s", "user", "hello", message_id="msg-1")
    wal = client.keys.session("default", "s").wal
    length = client.redis.xlen(wal)
    again = client.append("s", "user", "hello", message_id="msg-1")
    assert (again.seq, again.duplicate, first.duplicate) == (first.seq, True, False)
    assert client.redis.xlen(wal) == length
    assert client.append("s", "user", "next").seq == first.seq + 1


def test_buffer_keeps_the_most_recent_window(
    redis_client: redis.Redis, make_settings: object
) -> None:
    """The buffer holds the last BUFFER_MAX_MESSAGES; the token total follows it."""
    settings: Settings = make_settings(buffer_max_messages=5)  # type: ignore[operator]
    client = MemoryClient(redis=redis_client, settings=settings)
    results = [client.append("s", "user", "word " * (i + 1)) for i in range(12)]
    context = client.context("s")
    assert [m.seq for m in context.messages] == [8, 9, 10, 11, 12]
    assert context.tokens == sum(r.tokens for r in results[-5:])
    assert [m.content for m in context.messages] == ["word " * (i + 1) for i in range(7, 12)]


def test_keys_of_one_append_share_one_slot(client: MemoryClient) -> None:
    """Every key one script touches hashes to one cluster slot (the {shard} tag)."""
    for tenant, session_id in [("default", "a"), ("t-2", "session.with@chars"), ("x", "9" * 128)]:
        keys = client.keys.session(tenant, session_id)
        assert len({key_slot(key.encode()) for key in keys.all()}) == 1


def test_wal_entry_carries_the_message(client: MemoryClient) -> None:
    """The WAL entry holds seq and the JSON record the drainer needs."""
    result = client.append(
        "s", "tool", "out\tput\n", subject_id="user-7", metadata={"tool": "search", "n": [1, 2.5]}
    )
    [(_, fields)] = client.redis.xrange(client.keys.session("default", "s").wal)
    record = json.loads(fields["d"])
    assert int(fields["q"]) == result.seq
    assert record["id"] == result.message_id
    assert (record["t"], record["s"], record["r"], record["c"]) == (
        "default",
        "s",
        "tool",
        "out\tput\n",
    )
    assert (record["k"], record["sub"], record["md"]) == (
        result.tokens,
        "user-7",
        {"tool": "search", "n": [1, 2.5]},
    )


def test_subject_cannot_change_and_a_refusal_writes_nothing(client: MemoryClient) -> None:
    """A session belongs to one subject; a different subject_id is refused untouched."""
    client.append("s", "user", "hi", subject_id="alice")
    keys = client.keys.session("default", "s")
    before = {key: client.redis.dump(key) for key in keys.all()}
    with pytest.raises(ValidationError) as error:
        client.append("s", "user", "hi", subject_id="bob")
    assert error.value.field == "subject_id"
    assert {key: client.redis.dump(key) for key in keys.all()} == before
    assert client.append("s", "user", "again", subject_id="alice").seq == 2
