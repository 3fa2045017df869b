"""State entries of the write-ahead log, and how the drainer applies them to the store.

Three kinds (``core/log/entries.py`` sorts entries by kind and version):

- ``st`` 1, a state patch: ``t`` tenant, ``s`` session, ``n`` the new version (the old one is
  n - 1), ``a`` actor, ``ms`` when, ``sc`` schema version, ``d`` JSON of the changed fields;
- ``ar`` 1, an agent result put: ``i`` id, ``n`` position, ``ms`` when, ``d`` the result JSON;
- ``ac`` 1, agent results consumed at ``ms``: ``d`` JSON list of their ids.

Applied inside the batch's transaction, in WAL order, which is version order per session
(state_patch.lua assigns the version and appends the entry in one script). Exactly once: a
history row is unique on (tenant, session_id, version) and a field of ``sessions.state`` is
set only by a version newer than the one that last set it (``FIELD_VERSIONS_KEY``); a result
row is unique on its id and ``consumed_at`` is set only while NULL.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, tuple_, update

from core.errors import PermanentError
from core.models import micros_to_datetime
from core.retention.policy import NO_RETENTION, RetentionPolicy, later_of
from core.state.model import FIELDS
from core.store.codec import expect_count, expect_text
from core.store.db import agent_results, insert_for, sessions, state_history

PATCH = ("st", "1")
RESULT = ("ar", "1")
CONSUMED = ("ac", "1")
SCHEMA_KEY = "_schema"
# In sessions.state: field -> the version that last set it. A patch sets a field only when it
# is newer than that, so applying is idempotent and order-free: a patch replayed from the
# dead letters after later ones landed fills in only the fields no later version changed.
FIELD_VERSIONS_KEY = "_fv"


@dataclass(frozen=True, slots=True)
class StatePatchRow:
    tenant: str
    session_id: str
    version: int
    actor: str | None
    at: datetime
    schema_version: int
    changes: dict[str, Any]
    # Not a message: nothing for the sessions' message high water.
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ResultRow:
    tenant: str
    session_id: str
    result_id: str
    position: int
    at: datetime
    result: Any
    seq: int = 0


@dataclass(frozen=True, slots=True)
class ConsumedRow:
    tenant: str
    session_id: str
    at: datetime
    result_ids: list[str]
    seq: int = 0


StateRow = StatePatchRow | ResultRow | ConsumedRow


def _malformed(exc: Exception) -> PermanentError:
    return PermanentError(f"malformed WAL entry: {exc.__class__.__name__}: {exc}")


def _at(fields: dict[str, str]) -> datetime:
    return micros_to_datetime(expect_count(fields["ms"]) * 1000)


def decode_patch(fields: dict[str, str]) -> StatePatchRow:
    try:
        changes = json.loads(fields["d"])
        if not isinstance(changes, dict) or not changes or set(changes) - set(FIELDS):
            raise ValueError("changes must be an object of known state fields")
        version = expect_count(fields["n"])
        if version < 1:
            raise ValueError("version must be >= 1")
        return StatePatchRow(
            tenant=expect_text(fields["t"]),
            session_id=expect_text(fields["s"]),
            version=version,
            actor=fields["a"] or None,
            at=_at(fields),
            schema_version=expect_count(fields["sc"]),
            changes=changes,
        )
    except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise _malformed(exc) from None


def decode_result(fields: dict[str, str]) -> ResultRow:
    try:
        return ResultRow(
            tenant=expect_text(fields["t"]),
            session_id=expect_text(fields["s"]),
            result_id=expect_text(fields["i"]),
            position=expect_count(fields["n"]),
            at=_at(fields),
            result=json.loads(fields["d"]),
        )
    except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise _malformed(exc) from None


def decode_consumed(fields: dict[str, str]) -> ConsumedRow:
    try:
        ids = json.loads(fields["d"])
        if not isinstance(ids, list):
            raise TypeError("ids must be a list")
        return ConsumedRow(
            tenant=expect_text(fields["t"]),
            session_id=expect_text(fields["s"]),
            at=_at(fields),
            result_ids=[expect_text(result_id) for result_id in ids],
        )
    except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise _malformed(exc) from None


DECODERS: dict[tuple[str, str], Callable[[dict[str, str]], StateRow]] = {
    PATCH: decode_patch,
    RESULT: decode_result,
    CONSUMED: decode_consumed,
}


def apply_state_rows(
    connection: Connection, rows: Sequence[StateRow], *, policy: RetentionPolicy = NO_RETENTION
) -> int:
    """Apply ``rows`` (in WAL order) in the caller's transaction; returns rows written."""
    patches = [row for row in rows if isinstance(row, StatePatchRow)]
    written = _apply_patches(connection, patches, policy) if patches else 0
    results = [row for row in rows if isinstance(row, ResultRow)]
    if results:
        # Results at or below a cleared session's floor were erased (core/erasure).
        floors = _floors(connection, {(row.tenant, row.session_id) for row in results})
        results = [
            row for row in results if row.position > floors.get((row.tenant, row.session_id), 0)
        ]
    if results:
        statement = insert_for(connection, agent_results).on_conflict_do_nothing(
            index_elements=["tenant", "session_id", "result_id"]
        )
        outcome = connection.execute(
            statement,
            [
                {
                    "tenant": row.tenant,
                    "session_id": row.session_id,
                    "result_id": row.result_id,
                    "position": row.position,
                    "result": row.result,
                    "created_at": row.at,
                    "expires_at": policy.expires_at(row.tenant, "state", row.at),
                }
                for row in results
            ],
        )
        written += max(outcome.rowcount, 0)
    # After the inserts: a result put and taken within one batch is found.
    for row in rows:
        if isinstance(row, ConsumedRow):
            outcome = connection.execute(
                update(agent_results)
                .where(
                    (agent_results.c.tenant == row.tenant)
                    & (agent_results.c.session_id == row.session_id)
                    & agent_results.c.result_id.in_(row.result_ids)
                    & agent_results.c.consumed_at.is_(None)
                )
                .values(consumed_at=row.at)
            )
            written += max(outcome.rowcount, 0)
    return written


def _floors(connection: Connection, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The sessions' results floors (cleared_result_position), for those with a row."""
    found = connection.execute(
        select(sessions.c.tenant, sessions.c.session_id, sessions.c.cleared_result_position).where(
            tuple_(sessions.c.tenant, sessions.c.session_id).in_(sorted(pairs))
        )
    )
    return {(tenant, session_id): int(floor) for tenant, session_id, floor in found}


def _apply_patches(
    connection: Connection, patches: Sequence[StatePatchRow], policy: RetentionPolicy
) -> int:
    by_session: dict[tuple[str, str], list[StatePatchRow]] = defaultdict(list)
    for row in patches:
        by_session[(row.tenant, row.session_id)].append(row)
    # A fixed lock order: two drainers never deadlock on sessions rows.
    ordered = sorted(by_session)
    found = connection.execute(
        select(
            sessions.c.tenant,
            sessions.c.session_id,
            sessions.c.state,
            sessions.c.state_version,
            sessions.c.cleared_state_version,
        )
        .where(tuple_(sessions.c.tenant, sessions.c.session_id).in_(ordered))
        .order_by(sessions.c.tenant, sessions.c.session_id)
        .with_for_update()
    ).all()
    stored = {(r.tenant, r.session_id): (dict(r.state or {}), int(r.state_version)) for r in found}
    # Versions at or below a cleared session's floor were erased (core/erasure): read under
    # the row lock, so a clear that committed first is seen and a later one waits for us.
    cleared = {(r.tenant, r.session_id): int(r.cleared_state_version) for r in found}
    patches = [p for p in patches if p.version > cleared.get((p.tenant, p.session_id), 0)]
    by_session = defaultdict(list)
    for row in patches:
        by_session[(row.tenant, row.session_id)].append(row)
    ordered = sorted(by_session)
    if not patches:
        return 0
    values = []
    for key in ordered:
        state, version = stored.get(key, ({}, 0))
        first = by_session[key][0]
        field_versions: dict[str, int] = dict(state.get(FIELD_VERSIONS_KEY) or {})
        for row in by_session[key]:
            for name, value in row.changes.items():
                if row.version > field_versions.get(name, 0):
                    state[name] = value
                    field_versions[name] = row.version
            if row.version > version:
                state[SCHEMA_KEY] = row.schema_version
                version = row.version
        state[FIELD_VERSIONS_KEY] = field_versions
        values.append(
            {
                "tenant": key[0],
                "session_id": key[1],
                "created_at": first.at,
                "updated_at": by_session[key][-1].at,
                "state": state,
                "state_version": version,
                # The session row (and its current state) stays at least this long; purge
                # deletes it only once none of its rows remain (core/retention).
                "expires_at": policy.expires_at(key[0], "state", by_session[key][-1].at),
            }
        )
    statement = insert_for(connection, sessions).values(values)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant", "session_id"],
            set_={
                "state": statement.excluded.state,
                "state_version": statement.excluded.state_version,
                "updated_at": statement.excluded.updated_at,
                "expires_at": later_of(
                    connection, sessions.c.expires_at, statement.excluded.expires_at
                ),
            },
        )
    )
    history = insert_for(connection, state_history).on_conflict_do_nothing(
        index_elements=["tenant", "session_id", "version"]
    )
    outcome = connection.execute(
        history,
        [
            {
                "tenant": row.tenant,
                "session_id": row.session_id,
                "version": row.version,
                "prev_version": row.version - 1,
                "actor": row.actor,
                "schema_version": row.schema_version,
                "fields": sorted(row.changes),
                "changes": row.changes,
                "changed_at": row.at,
                "expires_at": policy.expires_at(row.tenant, "state", row.at),
            }
            for row in patches
        ],
    )
    return max(outcome.rowcount, 0)
