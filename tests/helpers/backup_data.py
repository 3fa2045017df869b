"""Data in every durable table, written through the real client and drainer, and a row-by-row
comparison of two databases (what a restore drill checks)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from langgraph.checkpoint.base import empty_checkpoint

from core.backups.tables import SPECS
from core.checkpoints.store import CheckpointStore
from core.client import MemoryClient
from core.integrations.langgraph import MemscribeSaver
from core.log.drainer import Drainer
from core.store.db import make_engine, subject_keys
from core.summaries.store import SummaryRecord, save_summary

# A number json keeps as written but jsonb (or a parse) would rewrite: the exact-text check.
METADATA = {"score": 2.5e16, "tags": ["ü", "€"], "nested": {"b": 1, "a": [True, None]}}


def seed(
    client: MemoryClient,
    drainer: Drainer,
    *,
    subjects: int = 3,
    sessions_per_subject: int = 2,
    messages_per_session: int = 4,
    tag: str = "a",
) -> dict[str, Any]:
    """Messages (with and without a subject), memories, state and its history, agent results,
    summaries with LLM usage, a deleted message's tombstone; drained."""
    made: dict[str, Any] = {"sessions": [], "subjects": []}
    for s in range(subjects):
        subject = f"subject-{tag}{s}"
        made["subjects"].append(subject)
        for k in range(sessions_per_subject):
            session = f"s-{tag}{s}-{k}"
            made["sessions"].append(session)
            for n in range(messages_per_session):
                client.append(
                    session,
                    "user" if n % 2 == 0 else "assistant",
                    f"{subject} says {n}: naïve café ✓",
                    subject_id=subject,
                    metadata=METADATA if n == 0 else None,
                )
        client.remember(subject, f"{subject} prefers tea", priority="HIGH")
        client.remember(subject, f"{subject} is allergic to nuts", priority="CRITICAL")
    anonymous = f"anon-{tag}"
    made["anonymous"] = anonymous
    for n in range(3):
        client.append(anonymous, "user", f"anonymous {n}:\t tab, \\ backslash,\n newline\r")
    first = made["sessions"][0]
    client.update_state(first, lambda data: {**data, "step": 1}, actor="agent")
    client.update_state(first, lambda data: {**data, "step": 2, "plan": ["a", "b"]})
    client.put_result(first, {"answer": 42, "tool": "calculator"})
    _checkpoints(client, made, tag)
    drainer.drain_all()
    save_summary(
        client.engine,
        SummaryRecord(
            tenant="default",
            session_id=first,
            covers_through_seq=2,
            from_seq=1,
            text=f"{made['subjects'][0]} said hello twice",
            tokens=7,
            folded_tokens=20,
            model="fake-model",
            created_at=datetime.now(UTC),
            prompt_tokens=100,
            completion_tokens=7,
        ),
        usage="always",
    )
    client.delete_message(f"{first}-gone", session_id=first)  # no such message: a no-op
    return made


def _checkpoints(client: MemoryClient, made: dict[str, Any], tag: str) -> None:
    """LangGraph checkpoints, blobs and writes of a subject's thread and of an anonymous one,
    and a deleted thread's floor."""
    store = CheckpointStore(
        redis=client.redis, settings=client.settings, engine=lambda: client.engine
    )
    saver = MemscribeSaver(store=store, subject_key="user_id")
    for i, user in enumerate([made["subjects"][0], None]):
        configurable: dict[str, Any] = {"thread_id": f"graph-{tag}{i}", "checkpoint_ns": ""}
        if user is not None:
            configurable["user_id"] = user
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"messages": [f"{user} asked: naïve ✓"], "n": i}
        checkpoint["channel_versions"] = {"messages": "1", "n": "1"}
        metadata: Any = {"source": "loop", "step": 0, "score": 2.5e16}
        stored = saver.put({"configurable": configurable}, checkpoint, metadata, {"messages": "1"})
        written = {"configurable": {**configurable, **stored["configurable"]}}
        saver.put_writes(written, [("out", f"{user} wrote")], task_id="task-1")  # type: ignore[arg-type]
    saver.delete_thread(f"graph-{tag}gone")


def table_rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every backed-up table's rows, as the backup reads them (JSON as stored text), in
    primary-key order, plus the key store's rows."""
    engine = make_engine(url)
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for spec in SPECS:
            width = len(spec.columns)
            found[spec.name] = [
                tuple(row[:width]) for row in connection.execute(spec.select_rows()).all()
            ]
        found["subject_keys"] = [
            tuple(row)
            for row in connection.execute(
                sa.select(subject_keys).order_by(subject_keys.c.key_id)
            ).all()
        ]
    engine.dispose()
    return found


def differences(
    source: dict[str, list[tuple[Any, ...]]], restored: dict[str, list[tuple[Any, ...]]]
) -> list[str]:
    """Rows present on one side only, per table (empty: identical)."""
    problems = []
    for table in sorted(set(source) | set(restored)):
        mine, theirs = set(source.get(table, [])), set(map(tuple, restored.get(table, [])))
        for row in sorted(mine - theirs, key=repr):
            problems.append(f"{table}: missing from the restore: {row!r}")
        for row in sorted(theirs - mine, key=repr):
            problems.append(f"{table}: only in the restore: {row!r}")
        if len(source.get(table, [])) != len(restored.get(table, [])):
            problems.append(f"{table}: {len(source[table])} rows vs {len(restored[table])}")
    return problems
