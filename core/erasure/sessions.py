"""Clearing one session's history everywhere: Redis, the WAL's future and the durable store.

A clear fixes *floors* (``sessions.cleared_seq``, ``cleared_state_version``,
``cleared_result_position``): everything of the session at or below them is gone, and every
writer compares against them under the session row's lock (the drainer, summaries, state), so
nothing that was in flight when the clear happened can bring it back. The steps:

1. ``session_clear.lua`` (one call, the session's slot): the buffer, dedupe ids, summary and
   state at or below the floor leave Redis and any summary in flight is fenced off. A warm
   session's floor is its seq right now; it stays warm, so seq continues (never reused) and
   a message appended after this call is new data and kept.
2. One transaction: the session row's floors are raised (the row is created if the store has
   not seen the session yet, so an entry still in the WAL meets its floor), then the rows at
   or below them are deleted.
3. ``session_clear.lua`` again with the stored floor: a re-warm from the store that read it
   before step 2 (a session Redis had forgotten) is trimmed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, null, select

from config.settings import Settings
from core.retention.policy import RetentionPolicy
from core.store.db import (
    agent_results,
    insert_for,
    of_session,
    sessions,
    state_history,
    summaries,
)
from core.store.db import messages as messages_table
from core.store.db_errors import translate_errors
from core.store.keys import Keys, SessionKeys, StateKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

MESSAGES, SUMMARIES, STATE = "m", "s", "t"
EVERYTHING = MESSAGES + SUMMARIES + STATE


@dataclass(slots=True)
class Cleared:
    """What one clear removed, per store (counts only)."""

    seq_floor: int = 0
    state_floor: int = 0
    results_floor: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, count: int) -> None:
        if count:
            self.counts[name] = self.counts.get(name, 0) + count


@dataclass(frozen=True, slots=True)
class RedisFloors:
    seq: int
    warm: bool
    state: int
    results: int
    removed: int


def clear_in_redis(
    scripts: Scripts,
    keys: SessionKeys,
    state: StateKeys,
    *,
    what: str,
    floor: int = 0,
    ttl_s: int,
) -> RedisFloors:
    """Step 1 (``floor`` 0) or 3 (the stored floor) of the module docstring."""
    with redis_errors():
        reply = scripts.session_clear(
            keys=[
                keys.meta,
                keys.buffer,
                keys.recent_ids,
                keys.summary_lease,
                keys.summary_draft,
                keys.summary_pending,
                keys.high_water,
                state.main,
                *state.kind_keys(),
                state.results,
                state.unconsumed,
                state.consumed,
                state.high_water,
            ],
            args=[keys.member, what, floor, ttl_s],
        )
    seq, warm, state_floor, results_floor, removed = (int(value) for value in reply)
    return RedisFloors(seq, bool(warm), state_floor, results_floor, removed)


def _greatest(connection: Connection, *values: Any) -> Any:
    # SQLite's many-argument max() is its scalar greatest().
    name = func.greatest if connection.dialect.name == "postgresql" else func.max
    return name(*values)


def raise_floors(
    connection: Connection,
    keys: SessionKeys,
    found: RedisFloors,
    *,
    what: str,
    erased_by: str | None = None,
) -> Cleared:
    """Step 2's first half: the session row's floors, under its lock. Returns them."""
    now = datetime.now(UTC)
    row = sessions.c
    values: dict[str, Any] = {}
    if MESSAGES in what:
        # A warm session's seq in Redis is the newest old message; for one Redis had
        # forgotten, the store's last_seq (and any undrained entry's high water) is.
        floor = found.seq if found.warm else _greatest(connection, row.last_seq, found.seq)
        values["cleared_seq"] = _greatest(connection, row.cleared_seq, floor)
        values["last_seq"] = _greatest(connection, row.last_seq, floor)
    if STATE in what:
        values["cleared_state_version"] = _greatest(
            connection, row.cleared_state_version, row.state_version, found.state
        )
        values["cleared_result_position"] = _greatest(
            connection, row.cleared_result_position, found.results
        )
        values["state"] = null()  # SQL NULL (None would store JSON null)
    if erased_by is not None:
        values.update(subject_id=None, settings=null(), erased_by=erased_by)
    statement = insert_for(connection, sessions).values(
        tenant=keys.tenant,
        session_id=keys.session_id,
        created_at=now,
        updated_at=now,
        last_seq=found.seq,
        cleared_seq=found.seq if MESSAGES in what else 0,
        cleared_state_version=found.state if STATE in what else 0,
        cleared_result_position=found.results if STATE in what else 0,
        erased_by=erased_by,
    )
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "session_id"], set_={"updated_at": now, **values}
        )
    )
    stored = connection.execute(
        select(row.cleared_seq, row.cleared_state_version, row.cleared_result_position).where(
            of_session(sessions, keys.tenant, keys.session_id)
        )
    ).one()
    return Cleared(int(stored[0]), int(stored[1]), int(stored[2]))


def delete_messages(
    connection: Connection, keys: SessionKeys, cleared: Cleared, *, limit: int
) -> int:
    """Up to ``limit`` of the session's messages at or below its floor; returns how many.
    Bounded, so one huge session never holds a long transaction (the caller loops)."""
    where = of_session(messages_table, keys.tenant, keys.session_id)
    doomed = (
        select(messages_table.c.seq)
        .where(where & (messages_table.c.seq <= cleared.seq_floor))
        .limit(limit)
    )
    gone = connection.execute(
        delete(messages_table).where(where & messages_table.c.seq.in_(doomed))
    ).rowcount
    cleared.add("messages", gone)
    return int(gone)


def delete_rest(connection: Connection, keys: SessionKeys, cleared: Cleared, *, what: str) -> None:
    """The session's summaries (``s``) and its state history and results at or below their
    floors (``t``). clear_buffer (``m`` alone) keeps summaries: one still folding cleared
    messages is refused by save_summary (core/summaries/store.py)."""
    if SUMMARIES in what:
        gone = connection.execute(
            delete(summaries).where(of_session(summaries, keys.tenant, keys.session_id))
        ).rowcount
        cleared.add("summaries", gone)
    if STATE in what:
        for name, table, column, floor in (
            ("state_history", state_history, state_history.c.version, cleared.state_floor),
            ("agent_results", agent_results, agent_results.c.position, cleared.results_floor),
        ):
            gone = connection.execute(
                delete(table).where(
                    of_session(table, keys.tenant, keys.session_id) & (column <= floor)
                )
            ).rowcount
            cleared.add(name, gone)


class SessionClearer:
    """The three steps for one session at a time (thread-safe; no state of its own). ``bar``
    makes the old data residue nothing can write again; ``empty`` deletes it."""

    def __init__(self, *, scripts: Scripts, engine: Engine, settings: Settings) -> None:
        self._scripts = scripts
        self._engine = engine
        self._keys = Keys.of(settings)
        self._ttl_s = settings.session_ttl_s
        self._retention = RetentionPolicy.of(settings)

    def clear(self, tenant: str, session_id: str, *, what: str) -> Cleared:
        return self.empty(tenant, session_id, self.bar(tenant, session_id, what=what), what=what)

    def bar(
        self, tenant: str, session_id: str, *, what: str, erased_by: str | None = None
    ) -> Cleared:
        """Steps 1 and 2's floors: Redis cleared, the floors durable. Returns the floors."""
        keys = self._keys.session(tenant, session_id)
        state = self._keys.state(tenant, session_id)
        found = clear_in_redis(self._scripts, keys, state, what=what, ttl_s=self._ttl(tenant))
        with translate_errors(), self._engine.begin() as connection:
            cleared = raise_floors(connection, keys, found, what=what, erased_by=erased_by)
        cleared.add("redis_buffer", found.removed)
        return cleared

    def empty(
        self, tenant: str, session_id: str, cleared: Cleared, *, what: str, batch_rows: int = 10_000
    ) -> Cleared:
        """Step 2's deletes (bounded transactions: once the floors are durable, every row at or
        below them is residue no writer can add to) and step 3."""
        keys = self._keys.session(tenant, session_id)
        with translate_errors(), self._engine.begin() as connection:
            delete_rest(connection, keys, cleared, what=what)
        if MESSAGES in what:
            while True:
                with translate_errors(), self._engine.begin() as connection:
                    if delete_messages(connection, keys, cleared, limit=batch_rows) < batch_rows:
                        break
        # Step 3 leaves state alone: state written after step 1 is new, and a stale re-warm
        # of state cannot happen (the store's state is gone since step 2).
        again = clear_in_redis(
            self._scripts,
            keys,
            self._keys.state(tenant, session_id),
            what=what.replace(STATE, ""),
            floor=cleared.seq_floor,
            ttl_s=self._ttl(tenant),
        )
        cleared.add("redis_buffer", again.removed)
        return cleared

    def _ttl(self, tenant: str) -> int:
        return self._retention.session_ttl_s(tenant, self._ttl_s)
