"""clear_session, clear_buffer, clear_summaries: one session's history gone everywhere
(Redis, undrained WAL entries, the durable store), seq continuing, nothing coming back."""

from __future__ import annotations

import sqlalchemy as sa

from core.client import MemoryClient
from core.log.drainer import Drainer
from core.store.db import make_engine
from tests.conftest import both_backends, messages_in_store


def stored(url: str, session: str = "s") -> list[tuple[int, str | None]]:
    """The session's (seq, content) in the store, content opened (docs/encryption.md)."""
    rows = [row for row in messages_in_store(url) if row.session_id == session]
    return sorted((int(row.seq), row.content) for row in rows)


@both_backends
def test_clear_session_removes_history_everywhere_and_seq_continues(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    for i in range(5):
        client.append("s", "user", f"drained {i}")
    drainer.flush(timeout_s=10)
    for i in range(3):
        client.append("s", "user", f"undrained {i}")  # still in the WAL at the clear
    client.update_state("s", lambda data: {**data, "plan": "secret"})

    cleared = client.clear_session("s")

    assert cleared.seq_floor == 8
    assert cleared.counts["messages"] == 5
    assert client.context("s").messages == []
    after = client.append("s", "user", "after the clear")
    assert after.seq == 9
    drainer.flush(timeout_s=10)
    # The undrained entries met the floor at drain time: nothing of before came back.
    assert stored(database_url) == [(9, "after the clear")]
    assert [m.content for m in client.context("s").messages] == ["after the clear"]
    assert client.state("s").data == {}


@both_backends
def test_clear_session_of_a_session_redis_forgot(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    for i in range(4):
        client.append("s", "user", f"old {i}")
    drainer.flush(timeout_s=10)
    client.redis.flushdb()  # Redis forgot the session; the store still has it

    client.clear_session("s")

    assert client.context("s").messages == []
    assert client.append("s", "user", "new").seq == 5
    drainer.flush(timeout_s=10)
    assert stored(database_url) == [(5, "new")]


def test_clear_buffer_keeps_the_summary_and_clear_summaries_keeps_messages(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    for i in range(3):
        client.append("s", "user", f"m{i}")
    drainer.flush(timeout_s=10)
    engine = make_engine(pg_database)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO summaries (tenant, session_id, covers_through_seq, from_seq, text,"
                " tokens, folded_tokens, model, created_at) VALUES ('default', 's', 2, 1,"
                " 'they talked', 3, 10, 'test', now())"
            )
        )
    client.clear_summaries("s")
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM summaries")).scalar() == 0
    assert [seq for seq, _ in stored(pg_database)] == [1, 2, 3]

    client.clear_buffer("s")
    assert stored(pg_database) == []
    assert client.context("s").messages == []
    assert client.append("s", "user", "next").seq == 4
    engine.dispose()


def test_clear_validates_before_touching_anything(client: MemoryClient) -> None:
    import pytest

    from core.errors import ValidationError

    client.append("s", "user", "kept")
    with pytest.raises(ValidationError, match="session_id"):
        client.clear_session("bad id with spaces")
    assert [m.content for m in client.context("s").messages] == ["kept"]


@both_backends
def test_delete_message_drained_and_undrained(
    client: MemoryClient, drainer: Drainer, database_url: str
) -> None:
    first = client.append("s", "user", "keep one")
    doomed = client.append("s", "user", "delete me (drained)")
    drainer.flush(timeout_s=10)
    undrained = client.append("s", "user", "delete me (undrained)")
    client.append("s", "user", "keep two")

    assert client.delete_message(doomed.message_id) is True
    assert client.delete_message(undrained.message_id) is True  # found in the WAL
    assert client.delete_message("no-such-message") is False
    drainer.flush(timeout_s=10)

    assert stored(database_url) == [(1, "keep one"), (4, "keep two")]
    assert [m.content for m in client.context("s").messages] == ["keep one", "keep two"]
    assert client.append("s", "user", "next").seq == 5  # seq never reused
    assert first.seq == 1


def test_delete_message_drops_the_summaries_that_covered_it(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    ids = [client.append("s", "user", f"m{i}").message_id for i in range(6)]
    drainer.flush(timeout_s=10)
    engine = make_engine(pg_database)
    with engine.begin() as connection:
        for through, start in ((2, 1), (4, 3)):
            connection.execute(
                sa.text(
                    "INSERT INTO summaries (tenant, session_id, covers_through_seq, from_seq,"
                    " text, tokens, folded_tokens, model, created_at) VALUES ('default', 's',"
                    " :through, :start, :text, 3, 10, 'test', now())"
                ),
                {"through": through, "start": start, "text": f"through {through}"},
            )
    client.delete_message(ids[3])  # seq 4: only the summary through 4 covered it
    with engine.connect() as connection:
        left = connection.execute(sa.text("SELECT covers_through_seq FROM summaries")).scalars()
        assert list(left) == [2]
    engine.dispose()


def test_a_summary_in_flight_over_a_cleared_history_is_refused(
    client: MemoryClient, drainer: Drainer, pg_database: str
) -> None:
    """What a summarize call inside its LLM call would save after clear_summaries (it
    continues a summary that is gone) or clear_session (it folded cleared messages)."""
    from datetime import UTC, datetime

    import pytest

    from core.errors import ClearedError
    from core.summaries.store import SummaryRecord, save_summary

    for i in range(6):
        client.append("s", "user", f"m{i}")
    drainer.flush(timeout_s=10)

    def record(start: int, through: int) -> SummaryRecord:
        return SummaryRecord(
            "default", "s", through, start, f"{start}..{through}", 3, 10, "test", datetime.now(UTC)
        )

    save_summary(client.engine, record(1, 2), usage="never")  # a first summary is fine
    client.clear_summaries("s")
    with pytest.raises(ClearedError, match="through seq 2 was removed"):
        save_summary(client.engine, record(3, 4), usage="never")
    client.clear_session("s")
    with pytest.raises(ClearedError, match="cleared through seq 6"):
        save_summary(client.engine, record(1, 6), usage="never")
    engine = make_engine(pg_database)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM summaries")).scalar() == 0
    engine.dispose()
    client.append("s", "user", "new")
    save_summary(client.engine, record(7, 7), usage="never")  # continues the floor: fine
