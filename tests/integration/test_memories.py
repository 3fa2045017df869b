"""Long-term memories: remember, recall, forget, pin and priorities, end to end on real Redis
and the durable store (both backends where it matters)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from tests.conftest import both_backends
from tests.helpers.memories import rows as memory_rows


def _rows(client: MemoryClient) -> dict[str, Any]:
    """Every memories row by id, ``content`` opened (it is stored sealed)."""
    return {
        memory_id: SimpleNamespace(**row) for memory_id, row in memory_rows(client.engine).items()
    }


@both_backends
def test_remember_is_recallable_at_once_and_durable_after_a_drain(
    client: MemoryClient, drainer: Drainer
) -> None:
    first = client.remember("alice", "Alice is vegetarian", tags=["diet"], priority="HIGH")
    second = client.remember("alice", "Alice lives in Lisbon", source={"session_id": "s1"})
    client.remember("bob", "Bob prefers email over phone calls")

    recalled = client.recall("alice")
    assert {m.memory_id for m in recalled} == {first, second}  # before any drain
    assert _rows(client) == {}

    drainer.drain_all()
    rows = _rows(client)
    assert set(rows) >= {first, second}
    assert rows[first].priority == 3 and rows[first].tags == ["diet"]
    assert rows[second].provenance == {"session_id": "s1"}
    assert rows[first].content == "Alice is vegetarian"
    # The recall above was counted, in the store too, once drained.
    assert rows[first].access_count == 1 and rows[first].last_accessed is not None


def test_remember_is_idempotent_on_its_id(client: MemoryClient, drainer: Drainer) -> None:
    memory = client.remember("alice", "Alice is vegetarian", memory_id="m-1")
    again = client.remember("alice", "Alice is vegetarian", memory_id="m-1")
    assert memory == again == "m-1"
    assert len(client.recall("alice")) == 1
    assert client.redis.xlen(client.keys.subject("default", "alice").wal) == 1 + 1  # + access
    drainer.drain_all()
    assert list(_rows(client)) == ["m-1"]


def test_recall_ranks_by_relevance_then_priority(client: MemoryClient) -> None:
    client.remember("alice", "Alice is allergic to peanuts", priority="LOW", memory_id="nuts")
    client.remember("alice", "Alice works as a nurse in Porto", memory_id="job")
    client.remember(
        "alice", "Alice's daughter is called Rita", priority="CRITICAL", memory_id="kid"
    )
    assert client.recall("alice", query="which allergies does she have? peanuts")[0].memory_id == (
        "nuts"
    )
    assert client.recall("alice")[0].memory_id == "kid"  # no query: priority first
    only = client.recall("alice", min_priority="MEDIUM")
    assert {m.memory_id for m in only} == {"job", "kid"}
    top = client.recall("alice", k=1, query="nurse")
    assert [m.memory_id for m in top] == ["job"]
    assert top[0].priority == "MEDIUM" and top[0].content == "Alice works as a nurse in Porto"


def test_tags_filter_and_tenants_are_apart(client: MemoryClient) -> None:
    client.remember("alice", "likes jazz", tags=["music", "taste"], memory_id="jazz")
    client.remember("alice", "likes hiking", tags=["sport"], memory_id="hike")
    client.remember("alice", "other tenant's alice", tenant="acme", memory_id="acme-1")
    assert [m.memory_id for m in client.recall("alice", tags=["music"])] == ["jazz"]
    assert {m.memory_id for m in client.recall("alice")} == {"jazz", "hike"}
    assert [m.memory_id for m in client.recall("alice", tenant="acme")] == ["acme-1"]
    assert client.forget("acme-1", tenant="default") is False
    assert [m.tags for m in client.recall("alice", tags=["music"])] == [("music", "taste")]


@both_backends
def test_forget_before_and_after_the_drain(client: MemoryClient, drainer: Drainer) -> None:
    early = client.remember("alice", "Alice's PIN hint is her cat", memory_id="early")
    late = client.remember("alice", "Alice drinks oat milk", memory_id="late")
    assert client.forget(early) is True  # not durable yet: found through the shard index
    drainer.drain_all()
    assert set(_rows(client)) == {late}
    assert client.forget(late) is True  # durable: found in the store
    assert client.forget(late) is False
    assert client.recall("alice") == []
    drainer.drain_all()
    assert _rows(client) == {}
    assert client.forget("never-was") is False


@both_backends
def test_pin_and_priority_changes_reach_the_store(client: MemoryClient, drainer: Drainer) -> None:
    memory = client.remember("alice", "Alice's passport number ends in 42", priority="LOW")
    drainer.drain_all()
    assert client.pin(memory) is True
    assert client.set_priority(memory, "CRITICAL") is True
    [found] = client.recall("alice")
    assert found.pinned and found.priority == "CRITICAL"
    drainer.drain_all()
    row = _rows(client)[memory]
    assert row.pinned is True and row.priority == 4 and row.expires_at is None
    assert client.set_priority("nope", "LOW") is False


def test_a_subject_redis_forgot_is_read_from_the_store(
    client: MemoryClient, drainer: Drainer
) -> None:
    kept = client.remember("alice", "Alice is a night owl", memory_id="owl", tags=["sleep"])
    drainer.drain_all()
    keys = client.keys.subject("default", "alice")
    client.redis.delete(*keys.all())
    [found] = client.recall("alice")
    assert (found.memory_id, found.tags) == (kept, ("sleep",))
    assert client.redis.hexists(keys.memories, "~")  # re-warmed
    # Idempotency holds across the forgetting: the id is known from the store.
    client.redis.delete(*keys.all())
    assert client.remember("alice", "Alice is a night owl", memory_id="owl") == "owl"
    assert len(client.recall("alice")) == 1
    drainer.drain_all()
    assert list(_rows(client)) == ["owl"]


def test_decayed_memories_are_never_recalled(
    make_settings: Any, redis_client: Any, database_url: str
) -> None:
    settings: Settings = make_settings(database_url=database_url, memory_ttl_low_s=1)
    client = MemoryClient(redis=redis_client, settings=settings)
    client.remember("alice", "short-lived", priority="LOW", memory_id="low")
    client.remember("alice", "kept", priority="LOW", memory_id="pinned", pinned=True)
    client.remember("alice", "own ttl", priority="CRITICAL", ttl_s=1, memory_id="own")
    client.remember("alice", "critical", priority="CRITICAL", memory_id="crit")
    keys = client.keys.subject("default", "alice")
    # Age the records by moving their creation time back two seconds.
    for memory_id, value in redis_client.hgetall(keys.memories).items():
        if memory_id not in ("~", "^"):
            head, record = value.split("|", 1)
            body = json.loads(record)
            body["ts"] -= 2_000_000
            redis_client.hset(keys.memories, memory_id, f"{head}|{json.dumps(body)}")
    assert {m.memory_id for m in client.recall("alice")} == {"pinned", "crit"}
    client.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"content": "x" * 9000}, "content"),
        ({"content": "   "}, "content"),
        ({"content": "nul \x00 inside"}, "content"),
        ({"priority": "URGENT"}, "priority"),
        ({"priority": 4}, "priority"),
        ({"tags": ["ok", "bad tag"]}, "tags[1]"),
        ({"tags": ["*"]}, "tags[0]"),
        ({"tags": ["a\x00"]}, "tags[0]"),
        ({"tags": "music"}, "tags"),
        ({"tags": [f"t{i}" for i in range(40)]}, "tags"),
        ({"tags": [3]}, "tags[0]"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"ttl_s": True}, "ttl_s"),
        ({"memory_id": "a:b"}, "memory_id"),
        ({"source": {"session_id": "s", "from_seq": 5, "to_seq": 2}}, "source.from_seq"),
        ({"source": {"nope": 1}}, "source"),
        ({"subject_id": "x*"}, "subject_id"),
        ({"tenant": "{t}"}, "tenant"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(
    client: MemoryClient, kwargs: dict[str, Any], field: str
) -> None:
    from core.errors import ValidationError

    args: dict[str, Any] = {"subject_id": "alice", "content": "fine", **kwargs}
    subject = args.pop("subject_id")
    content = args.pop("content")
    with pytest.raises(ValidationError) as caught:
        client.remember(subject, content, **args)
    assert caught.value.field == field
    assert client.redis.dbsize() == 0


def test_remember_is_exactly_one_evalsha_and_recall_never_writes_the_store(
    settings: Settings, tmp_path: Any
) -> None:
    """remember on a warm subject sends one EVALSHA; recall one pipelined read and one EVALSHA
    (the access count), and neither touches PostgreSQL."""
    from core.client import redis_from_url
    from tests.helpers.private_redis import PrivateRedis

    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        client = MemoryClient(redis=redis_from_url(server.url()), settings=settings)
        client.remember("alice", "opens the pool and warms the view")
        client.recall("alice")
        # From here on the durable store is unreachable: a warm remember and recall never
        # need it.
        from core.store.db import make_engine

        client._engine = make_engine("postgresql+psycopg2://nobody@127.0.0.1:9/none")
        client.redis.config_resetstat()
        for i in range(5):
            client.remember("alice", f"fact {i}")
        stats = client.redis.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        assert calls.pop("evalsha") == 5
        assert calls.pop("config|resetstat", 1) == 1
        # Everything else ran inside the script (XADD, HSET, ...), none as a round trip of its own.
        assert "xadd" in calls and "hexists" in calls
        client.redis.config_resetstat()
        assert len(client.recall("alice", query="fact 3")) == 6
        stats = client.redis.info("commandstats")
        calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
        assert calls["evalsha"] == 1 and calls["hgetall"] == 2
        client.close()
    finally:
        server.stop()


def test_recall_ranks_by_embeddings_when_configured(
    make_settings: Any, redis_client: Any, database_url: str, fake_openai: Any
) -> None:
    """With MEMSCRIBE_EMBEDDINGS=openai the query is embedded (the fake server) and compared
    with the memories' vectors in the view; memories without one keep their lexical score."""
    from core.memories.embeddings import embedder_from_settings

    settings = make_settings(
        database_url=database_url, embeddings="openai", embedding_base_url=fake_openai.url
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    client.remember("alice", "Alice sails on weekends", memory_id="sail")
    client.remember("alice", "Alice collects stamps", memory_id="stamps")
    embedder = embedder_from_settings(settings)
    assert embedder is not None
    keys = client.keys.subject("default", "alice")
    [vector] = embedder.embed(["hobbies at sea"])
    redis_client.hset(keys.embeddings, "sail", json.dumps(vector))
    first = client.recall("alice", query="hobbies at sea")
    assert first[0].memory_id == "sail"  # no shared word: only the vectors say so
    assert len(fake_openai.requests("/v1/embeddings")) == 2  # the test's one and the query's
    fake_openai.stop()  # the embeddings server goes away: recall still answers, lexically
    assert {m.memory_id for m in client.recall("alice", query="stamps")} == {"sail", "stamps"}
    client.close()
