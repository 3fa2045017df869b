"""``configure_session``: per-session memory settings, atomic, and kept in the durable store.

The overrides live in two places: the session's Redis config hash (append.lua reads it inside
its one call) and ``sessions.settings`` (so they survive Redis forgetting the session; a cold
append restores them). One update at a time per session: the session's row is locked for the
read-merge-validate-write, so two concurrent calls never lose each other's change.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Connection, Engine, select, update

from core.errors import ValidationError
from core.models import MEMORY_SETTING_FIELDS, SessionMemorySettings, validate_memory_settings
from core.store.db import insert_for, of_session, sessions
from core.store.db_errors import translate_errors
from core.store.keys import SessionKeys
from core.store.redis_errors import redis_errors


def _lock_row(connection: Connection, tenant: str, session_id: str) -> dict[str, str] | None:
    """Create the session's row if needed, lock it, and return its stored overrides."""
    now = datetime.now(UTC)
    connection.execute(
        insert_for(connection, sessions)
        .values(tenant=tenant, session_id=session_id, created_at=now, updated_at=now, last_seq=0)
        .on_conflict_do_nothing(index_elements=["tenant", "session_id"])
    )
    query = select(sessions.c.settings).where(of_session(sessions, tenant, session_id))
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    # SQLite: the INSERT above already holds the database's write lock until commit.
    stored = connection.execute(query).scalar_one()
    return None if stored is None else {str(k): str(v) for k, v in stored.items()}


def overrides_given(**given: int | None) -> dict[str, int]:
    """configure_session's keyword arguments as config-hash fields (None: not given)."""
    for name, value in given.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValidationError(name, f"must be an integer, got {type(value).__name__}")
    return {
        MEMORY_SETTING_FIELDS[name]: value for name, value in given.items() if value is not None
    }


def configure(
    engine: Engine,
    client: redis.Redis,
    keys: SessionKeys,
    *,
    defaults: SessionMemorySettings,
    overrides: Mapping[str, int],
    reset: bool,
    ttl_s: int,
) -> SessionMemorySettings:
    """Merge ``overrides`` (config-hash field -> value) into the session's settings, validate,
    and write them to the store and to Redis. Raises ``ValidationError`` with nothing written."""
    with translate_errors(), engine.begin() as connection:
        durable = _lock_row(connection, keys.tenant, keys.session_id)
        with redis_errors():
            in_redis: dict[str, str] = client.hgetall(keys.config)  # type: ignore[assignment]
        # Redis wins while it has the session (it may hold overrides older than this column).
        stored = {} if reset else (in_redis or durable or {})
        merged: dict[Any, Any] = {**stored, **{k: str(v) for k, v in overrides.items()}}
        effective = validate_memory_settings(defaults.with_overrides(merged))
        connection.execute(
            update(sessions)
            .where(of_session(sessions, keys.tenant, keys.session_id))
            .values(settings=merged)
        )
        with redis_errors(), client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.config)
            if merged:
                pipe.hset(keys.config, mapping=merged)
                pipe.expire(keys.config, ttl_s)
            pipe.execute()
    return effective
