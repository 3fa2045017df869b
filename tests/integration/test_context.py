"""The read path: one round trip on a hit, read-through and re-warm on a miss."""

from __future__ import annotations

from core.client import MemoryClient
from core.log.drainer import Drainer
from tests.conftest import both_backends


def test_context_returns_the_buffer_in_order(client: MemoryClient) -> None:
    """Recent messages come back oldest first with their seq, role, content and metadata."""
    sent = [
        client.append("s", role, f"turn {i}", metadata={"i": i})
        for i, role in enumerate(["user", "assistant", "user"])
    ]
    context = client.context("s")
    assert [(m.seq, m.role, m.content, m.metadata) for m in context.messages] == [
        (1, "user", "turn 0", {"i": 0}),
        (2, "assistant", "turn 1", {"i": 1}),
        (3, "user", "turn 2", {"i": 2}),
    ]
    assert [m.message_id for m in context.messages] == [r.message_id for r in sent]
    assert context.tokens == sum(r.tokens for r in sent)
    assert (context.summary, context.from_durable_store) == (None, False)


def test_context_of_unknown_session_is_empty(client: MemoryClient) -> None:
    """A session neither store knows is an empty context, and nothing is created."""
    context = client.context("never-seen")
    assert (context.messages, context.tokens, context.summary) == ([], 0, None)
    assert client.redis.dbsize() == 0


@both_backends
def test_cold_session_reads_through_and_rewarms(client: MemoryClient, drainer: Drainer) -> None:
    """After Redis loses a session, context() answers from the store and re-warms Redis."""
    for i in range(40):
        client.append("s", "user" if i % 2 else "assistant", f"turn {i}", subject_id="alice")
    assert drainer.flush(timeout_s=30) == 0
    keys = client.keys.session("default", "s")
    client.redis.delete(keys.meta, keys.buffer, keys.recent_ids)

    cold = client.context("s")
    assert cold.from_durable_store
    assert [m.seq for m in cold.messages] == list(range(11, 41))  # the buffer's window (30)
    assert [m.content for m in cold.messages] == [f"turn {i}" for i in range(10, 40)]

    warm = client.context("s")
    assert not warm.from_durable_store
    assert warm.messages == cold.messages
    assert warm.tokens == cold.tokens
    # The seq counter was restored, so appends continue where the session left off.
    assert client.append("s", "user", "after the re-warm", subject_id="alice").seq == 41
