"""A subject's memories in Redis (the view ``recall`` reads), and its warm-up from the store.

The view holds every memory of the subject, live or not (see ``core/memories/records.py``),
so a read never needs the durable store while the view is complete. A subject Redis does not
hold (its view expired, or a Redis without persistence restarted) is read from the store
once and written back (``warm``), like a forgotten session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine, select

from core.memories.lineage import from_rows
from core.memories.records import COMPLETE
from core.memories.view_merge import stored_value
from core.store.db import memories
from core.store.db_errors import translate_errors
from core.store.keys import SubjectKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts


@dataclass(frozen=True, slots=True)
class View:
    """One read of a subject's view: its values, last recalls (ms) and embeddings."""

    complete: bool
    values: dict[str, str]
    accessed: dict[str, str]
    embeddings: dict[str, str]


def read(client: redis.Redis, keys: SubjectKeys, *, embeddings: bool = False) -> View:
    """The view in one round trip."""
    with redis_errors(), client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.memories)
        pipe.hgetall(keys.accessed)
        if embeddings:
            pipe.hgetall(keys.embeddings)
        replies: list[Any] = pipe.execute()
    values = replies[0]
    return View(
        complete=COMPLETE in values,
        values=values,
        accessed=replies[1],
        embeddings=replies[2] if embeddings else {},
    )


@dataclass(frozen=True, slots=True)
class DurableView:
    """A subject's memories as the store knows them, as view values."""

    values: list[tuple[str, str]]
    embeddings: list[tuple[str, str]]

    def flat(self) -> list[str]:
        return [item for pair in self.values for item in pair]


def load(engine: Engine, keys: SubjectKeys) -> DurableView:
    """Every memory of the subject in the store (live and superseded), as view values."""
    subject = (memories.c.tenant == keys.tenant) & (memories.c.subject_id == keys.subject_id)
    with translate_errors(), engine.connect() as connection:
        rows = connection.execute(
            select(memories).where(subject).order_by(memories.c.created_at)
        ).all()
    stored = from_rows(engine, rows)
    return DurableView(
        values=[(memory.memory_id, stored_value(memory)) for memory in stored],
        embeddings=[
            (memory.memory_id, json.dumps(memory.embedding, separators=(",", ":")))
            for memory in stored
            if memory.embedding is not None
        ],
    )


def warm(
    client: redis.Redis,
    scripts: Scripts,
    engine: Engine,
    keys: SubjectKeys,
    *,
    ttl_s: int,
) -> bool:
    """Fill the subject's view from the store unless it is complete already; True if filled."""
    durable = load(engine, keys)
    args: list[str | int] = [ttl_s, len(durable.values), *durable.flat()]
    for pair in durable.embeddings:
        args += pair
    with redis_errors():
        filled = scripts.memory_warm(
            keys=[keys.memories, keys.accessed, keys.embeddings], args=args
        )
    return bool(filled)
