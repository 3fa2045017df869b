"""The durable side of state: what a Redis miss reads back, and the history of changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from core.state.model import FIELDS, AgentResult, StateChange, encode
from core.state.wal import SCHEMA_KEY
from core.store.db import agent_results, of_session, sessions, state_history
from core.store.db_errors import translate_errors


@dataclass(frozen=True, slots=True)
class DurableState:
    version: int
    schema_version: int
    # field -> its JSON, for the fields the store holds
    fields: dict[str, str]

    def restore_args(self) -> list[str | int]:
        """The restore part of state_read.lua's and state_patch.lua's arguments."""
        args: list[str | int] = ["1", self.version, self.schema_version]
        for name, encoded in self.fields.items():
            args += [name, encoded]
        return args


def load_state(engine: Engine, tenant: str, session_id: str) -> DurableState:
    with translate_errors(), engine.connect() as connection:
        row = connection.execute(
            select(sessions.c.state, sessions.c.state_version).where(
                of_session(sessions, tenant, session_id)
            )
        ).first()
    if row is None or not row.state_version:
        return DurableState(0, 1, {})
    state: dict[str, Any] = dict(row.state or {})
    return DurableState(
        version=int(row.state_version),
        schema_version=int(state.get(SCHEMA_KEY, 1)),
        fields={name: encode(state[name]) for name in FIELDS if name in state},
    )


def history(
    engine: Engine, tenant: str, session_id: str, *, limit: int, before_version: int | None
) -> list[StateChange]:
    """The newest ``limit`` changes below ``before_version``, newest first."""
    query = select(state_history).where(of_session(state_history, tenant, session_id))
    if before_version is not None:
        query = query.where(state_history.c.version < before_version)
    query = query.order_by(state_history.c.version.desc()).limit(limit)
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        StateChange(
            version=int(row.version),
            prev_version=int(row.prev_version),
            actor=row.actor,
            changed_at=row.changed_at,
            schema_version=int(row.schema_version),
            fields=list(row.fields),
            changes=dict(row.changes),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class DurableResults:
    last_position: int
    unconsumed: list[AgentResult]
    # newest first
    consumed: list[AgentResult]

    def restore_args(self) -> list[str | int]:
        """The restore part of results_put.lua's and results_take.lua's arguments."""
        args: list[str | int] = [
            "1",
            self.last_position,
            len(self.unconsumed),
            len(self.consumed),
        ]
        for result in [*self.unconsumed, *self.consumed]:
            args += [
                result.result_id,
                f"{result.position}|{result.created_ms}|{encode(result.result)}",
                result.consumed_ms or 0,
            ]
        return args


def _ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


def load_results(engine: Engine, tenant: str, session_id: str, *, retention: int) -> DurableResults:
    """Every unconsumed result and the newest ``retention`` consumed ones."""
    where = of_session(agent_results, tenant, session_id)
    with translate_errors(), engine.connect() as connection:
        waiting = connection.execute(
            select(agent_results)
            .where(where & agent_results.c.consumed_at.is_(None))
            .order_by(agent_results.c.position)
        ).all()
        done = connection.execute(
            select(agent_results)
            .where(where & agent_results.c.consumed_at.is_not(None))
            .order_by(agent_results.c.position.desc())
            .limit(retention)
        ).all()
        last = connection.execute(
            select(agent_results.c.position)
            .where(where)
            .order_by(agent_results.c.position.desc())
            .limit(1)
        ).scalar()
        # A cleared session's positions continue above its floor (never reused).
        floor = connection.execute(
            select(sessions.c.cleared_result_position).where(
                of_session(sessions, tenant, session_id)
            )
        ).scalar()
        last = max(int(last or 0), int(floor or 0))

    def result(row: Any) -> AgentResult:
        consumed = None if row.consumed_at is None else _ms(row.consumed_at)
        return AgentResult(
            row.result_id, int(row.position), row.result, _ms(row.created_at), consumed
        )

    return DurableResults(int(last or 0), [result(r) for r in waiting], [result(r) for r in done])
