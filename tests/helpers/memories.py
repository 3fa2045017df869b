"""Memories written straight into the durable store (our own schema), for consolidation tests
that do not go through ``remember`` and the drainer."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from core.crypto.cipher import memory_aad
from core.crypto.vault import open_contents
from core.memories.similarity import content_hash
from core.models import new_message_id
from core.store.db import memories, memory_lineage

_clock = itertools.count()


@dataclass
class Seed:
    content: str
    priority: int = 2
    pinned: bool = False
    tags: Sequence[str] = ()
    provenance: dict[str, Any] | None = None
    memory_id: str = field(default_factory=new_message_id)


def truncate_memories(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE memories, memory_lineage, llm_usage"))


def seed(engine: Engine, tenant: str, subject_id: str, seeds: Sequence[Seed]) -> list[str]:
    """Insert ``seeds`` as live memories of the subject, oldest first; returns their ids."""
    base = datetime(2025, 1, 1, tzinfo=UTC)
    rows = []
    for item in seeds:
        at = base + timedelta(microseconds=next(_clock))
        rows.append(
            {
                "memory_id": item.memory_id,
                "tenant": tenant,
                "subject_id": subject_id,
                "content": item.content,
                "content_hash": content_hash(item.content),
                "priority": item.priority,
                "pinned": item.pinned,
                "tags": sorted(set(item.tags)),
                "access_count": 0,
                "provenance": item.provenance,
                "created_at": at,
                "updated_at": at,
            }
        )
    if rows:
        with engine.begin() as connection:
            connection.execute(memories.insert(), rows)
    return [row["memory_id"] for row in rows]


def rows(engine: Engine, *, tenant: str | None = None) -> dict[str, dict[str, Any]]:
    """Every memories row by id (as plain dicts), ``content`` opened (docs/encryption.md)."""
    query = sa.select(memories)
    if tenant is not None:
        query = query.where(memories.c.tenant == tenant)
    with engine.connect() as connection:
        found = {row.memory_id: dict(row._mapping) for row in connection.execute(query)}
    for row in found.values():
        aad = memory_aad(row["tenant"], row["subject_id"], row["memory_id"])
        row["content"] = open_contents(engine, [(row["key_id"], row["content"], aad)])[0]
    return found


def lineage_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(memory_lineage))]


def merge_reply(body: dict[str, Any]) -> str:
    """A well-behaved fake LLM merge: the numbered notes of the prompt, joined."""
    prompt = body["messages"][-1]["content"]
    notes = [line.split(". ", 1)[1] for line in prompt.splitlines()[1:] if ". " in line]
    return " ".join(dict.fromkeys(notes))
