"""``memscribe erasure verify``: search every store for data of an erased subject from before its
erasure, and report residue per store as counts (never the data itself).

"Before" is exact: what the erasures' floors and tombstones cover. A session's messages, state
and results above its floors, and memories the subject got afterwards, are new data and are
not residue. Stores searched: PostgreSQL (every table, by the sessions the erasures stamped
and the memory ids they tombstoned), the key store (the destroyed keys must be gone), Redis
(the sessions' buffers, dedupe ids, summaries, drafts, state and results; the subject's memory
view), every WAL and dead-letter stream, and the shared cache's tag of the subject. A cache's
in-process level is checked against Redis on every read (core/cache), so it cannot answer
with what Redis no longer holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Engine, func, select

from config.settings import Settings
from core.erasure import receipts, scrub
from core.erasure.job import erased_by
from core.erasure.request import subject_cache_tag
from core.erasure.scrub import Erased
from core.errors import ValidationError
from core.models import validate_id
from core.store.codec import split_buffer_item
from core.store.db import (
    agent_results,
    memories,
    memory_lineage,
    messages,
    of_session,
    sessions,
    state_history,
    summaries,
)
from core.store.db_errors import translate_errors
from core.store.keys import Keys
from core.store.redis_errors import redis_errors

KeyAlive = Callable[[str], bool]


@dataclass(slots=True)
class Verification:
    receipts: list[str]
    residue: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not any(self.residue.values())

    def add(self, store: str, count: int) -> None:
        self.residue[store] = self.residue.get(store, 0) + int(count)

    def as_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "receipts": self.receipts, "residue": self.residue}


def verify_subject(
    *,
    redis_client: redis.Redis,
    engine: Engine,
    settings: Settings,
    tenant: str,
    subject_id: str,
    key_alive: KeyAlive | None = None,
) -> Verification:
    """Residue of ``subject_id``'s erasures. Raises ``ValidationError`` when the subject has
    none on record (nothing to verify)."""
    validate_id("tenant", tenant)
    validate_id("subject_id", subject_id)
    found = receipts.of_subject(engine, tenant, receipts.subject_ref(settings, tenant, subject_id))
    if not found:
        raise ValidationError("subject_id", f"no erasure of this subject in tenant {tenant!r}")
    result = Verification([receipt.receipt_id for receipt in found])
    erased = erased_by(engine, result.receipts)
    _durable(engine, erased, result)
    for receipt in found:
        for key_id in receipt.key_ids:
            if key_alive is not None and key_alive(key_id):
                result.add("key_store", 1)
    keys = Keys.of(settings)
    with redis_errors():
        _redis(redis_client, keys, erased, tenant, subject_id, result)
        for store, count in scrub.scrub(redis_client, keys, erased, delete=False).items():
            result.add(store, count)
    return result


# (store, table, its column, the floor it is compared with): rows at or below are residue.
_BELOW_FLOORS = (
    ("messages", messages, messages.c.seq, "seq"),
    ("summaries", summaries, summaries.c.from_seq, "seq"),
    ("state_history", state_history, state_history.c.version, "state"),
    ("agent_results", agent_results, agent_results.c.position, "results"),
)


def _durable(engine: Engine, erased: Erased, result: Verification) -> None:
    with translate_errors(), engine.connect() as connection:

        def count(query: Any) -> int:
            return int(connection.execute(query).scalar_one())

        for (tenant, session_id), floors in erased.sessions.items():
            for store, table, column, floor in _BELOW_FLOORS:
                result.add(
                    store,
                    count(
                        select(func.count()).where(
                            of_session(table, tenant, session_id)
                            & (column <= getattr(floors, floor))
                        )
                    ),
                )
            result.add(
                "sessions",
                count(
                    select(func.count()).where(
                        of_session(sessions, tenant, session_id)
                        & sessions.c.state.is_not(None)
                        & (sessions.c.state_version <= floors.state)
                    )
                ),
            )
        ids = sorted(erased.memory_ids)
        for start in range(0, len(ids), 1000):
            page = ids[start : start + 1000]
            result.add(
                "memories", count(select(func.count()).where(memories.c.memory_id.in_(page)))
            )
            result.add(
                "memory_lineage",
                count(
                    select(func.count()).where(
                        memory_lineage.c.merged_id.in_(page) | memory_lineage.c.source_id.in_(page)
                    )
                ),
            )


def _redis(
    client: redis.Redis,
    keys: Keys,
    erased: Erased,
    tenant: str,
    subject_id: str,
    result: Verification,
) -> None:
    for (session_tenant, session_id), floors in erased.sessions.items():
        session = keys.session(session_tenant, session_id)
        state = keys.state(session_tenant, session_id)
        with client.pipeline(transaction=False) as pipe:
            pipe.lrange(session.buffer, 0, -1)
            pipe.zcount(session.recent_ids, "-inf", floors.seq)
            pipe.hmget(session.meta, ["summary", "cov"])
            pipe.exists(session.summary_draft)
            pipe.hmget(state.main, ["v"])
            buffer, ids, (summary, cov), draft, (version,) = pipe.execute()
        result.add(
            "redis_buffer", sum(1 for item in buffer if split_buffer_item(item)[0] <= floors.seq)
        )
        result.add("redis_dedupe_ids", ids)
        result.add("redis_summary", int(summary is not None and int(cov or 0) <= floors.seq))
        result.add("redis_summary_draft", draft)
        result.add("redis_state", int(version is not None and int(version) <= floors.state))
    view = keys.subject(tenant, subject_id).memories
    held = set(client.hkeys(view))
    result.add("redis_memories", len(held & erased.memory_ids))
    result.add("cache", client.scard(keys.cache_tag(subject_cache_tag(tenant, subject_id))))
