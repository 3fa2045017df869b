"""context(session, memories=k): the subject's memories within the memory token budget."""

from __future__ import annotations

from typing import Any

import pytest

from core.client import MemoryClient
from core.errors import ValidationError
from core.log.drainer import Drainer


def _client(make_settings: Any, redis_client: Any, database_url: str, **extra: Any) -> Any:
    return MemoryClient(
        redis=redis_client, settings=make_settings(database_url=database_url, **extra)
    )


def test_context_adds_the_subjects_best_memories(client: MemoryClient) -> None:
    client.remember("alice", "Alice is vegetarian", memory_id="veg", tags=["food"])
    client.remember("alice", "Alice's favourite band is Radiohead", memory_id="band")
    client.remember("bob", "Bob is vegan", memory_id="bob")
    client.append("chat-1", "user", "suggest a restaurant, vegetarian please", subject_id="alice")
    plain = client.context("chat-1")
    assert plain.memories == [] and plain.memory_tokens == 0
    found = client.context("chat-1", memories=5)
    assert found.memories[0].memory_id == "veg"  # ranked against the user turn
    assert {m.memory_id for m in found.memories} == {"veg", "band"}
    assert found.tokens == plain.tokens + found.memory_tokens > plain.tokens
    assert [m.memory_id for m in client.context("chat-1", memories=1).memories] == ["veg"]


def test_a_short_budget_drops_low_priorities_first_and_keeps_critical(
    make_settings: Any, redis_client: Any, database_url: str
) -> None:
    client = _client(make_settings, redis_client, database_url, memory_context_tokens=20)
    text = "Alice mentioned a detail about her trip to Lisbon and the hotel near the river"
    for priority in ("LOW", "MEDIUM", "HIGH", "CRITICAL"):
        client.remember("alice", f"{priority}: {text}", priority=priority, memory_id=priority)
    client.remember("alice", f"CRITICAL 2: {text}", priority="CRITICAL", memory_id="CRIT2")
    client.append("chat", "user", "hello", subject_id="alice")
    found = client.context("chat", memories=10)
    kept = {m.memory_id for m in found.memories}
    # Every memory costs more than 10 tokens: only the CRITICAL ones stay, over the budget.
    assert kept == {"CRITICAL", "CRIT2"}
    assert found.memory_tokens > 20
    roomy = _client(make_settings, redis_client, database_url, memory_context_tokens=60)
    kept = {m.memory_id for m in roomy.context("chat", memories=10).memories}
    assert {"CRITICAL", "CRIT2"} <= kept and "LOW" not in kept
    assert ("HIGH" in kept) or ("MEDIUM" not in kept)  # lower priorities go first


def test_context_of_a_session_without_subject_or_a_forgotten_session(
    client: MemoryClient, drainer: Drainer
) -> None:
    client.append("anon", "user", "hi")
    assert client.context("anon", memories=3).memories == []
    client.remember("alice", "Alice is vegetarian", memory_id="veg")
    client.append("chat", "user", "lunch ideas?", subject_id="alice")
    drainer.drain_all()
    client.redis.delete(*client.keys.session("default", "chat").own())
    client.redis.delete(*client.keys.subject("default", "alice").all())
    found = client.context("chat", memories=3)
    assert found.from_durable_store and [m.memory_id for m in found.memories] == ["veg"]
    with pytest.raises(ValidationError) as caught:
        client.context("chat", memories=-1)
    assert caught.value.field == "memories"
