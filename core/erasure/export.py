"""``export_subject``: every record memscribe holds about a subject, as one JSON document
(GDPR articles 15 and 20), streamed in pieces so a long history never sits in memory whole.

Messages come from wherever they are (the Redis buffer, the WAL, the durable store: the same
path as ``history``), so what is not yet durable is exported too. The document:
``{"tenant", "subject_id", "exported_at", "sessions": [{"session_id", "messages": [...],
"summaries": [...], "state": {...}}], "memories": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import select

from core.crypto.cipher import memory_aad
from core.crypto.vault import open_contents
from core.erasure.request import ErasureRequests
from core.models import HistoryPage, Memory, Message
from core.store.db import memories
from core.store.db_errors import translate_errors

PAGE = 500


class Exportable(Protocol):
    """What export needs of ``MemoryClient``."""

    def history(
        self, session_id: str, *, tenant: str, before_seq: int | None, limit: int
    ) -> HistoryPage: ...

    def get_summary_history(self, session_id: str, *, tenant: str, limit: int) -> list[Any]: ...

    def state(self, session_id: str, *, tenant: str) -> Any: ...

    def recall(self, subject_id: str, *, tenant: str, k: int) -> list[Memory]: ...


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _messages(client: Exportable, tenant: str, session_id: str) -> Iterator[str]:
    """The session's messages oldest first, paged backwards and emitted in order per page."""
    pages: list[list[Message]] = []
    before: int | None = None
    while True:
        page = client.history(session_id, tenant=tenant, before_seq=before, limit=PAGE)
        pages.append(page.messages)
        if page.next_before_seq is None or not page.messages:
            break
        before = page.next_before_seq
    first = True
    for page_messages in reversed(pages):
        for message in page_messages:
            yield ("" if first else ",") + _json(asdict(message))
            first = False


def export_subject(
    client: Exportable, requests: ErasureRequests, subject_id: str, *, tenant: str
) -> Iterator[str]:
    """The document in pieces; ``"".join(...)`` is valid JSON."""
    yield (
        f'{{"tenant":{_json(tenant)},"subject_id":{_json(subject_id)},'
        f'"exported_at":{_json(datetime.now(UTC))},"sessions":['
    )
    for index, session_id in enumerate(sorted(requests.sessions_of(tenant, subject_id))):
        yield ("," if index else "") + f'{{"session_id":{_json(session_id)},"messages":['
        yield from _messages(client, tenant, session_id)
        summaries = client.get_summary_history(session_id, tenant=tenant, limit=1000)
        state = client.state(session_id, tenant=tenant)
        yield f'],"summaries":{_json([asdict(s) for s in summaries])},'
        yield f'"state":{_json(state.as_dict())}}}'
    yield '],"memories":['
    live = {m.memory_id: asdict(m) for m in client.recall(subject_id, tenant=tenant, k=1000)}
    with translate_errors(), requests.engine.connect() as connection:
        # Superseded and forgotten-but-kept memories are records about the subject too.
        rows = connection.execute(
            select(memories).where(
                (memories.c.tenant == tenant) & (memories.c.subject_id == subject_id)
            )
        ).all()
    contents = open_contents(
        requests.engine,
        [(row.key_id, row.content, memory_aad(tenant, subject_id, row.memory_id)) for row in rows],
    )
    for row, content in zip(rows, contents, strict=True):
        if row.memory_id not in live and content is not None:
            live[row.memory_id] = {
                "memory_id": row.memory_id,
                "content": content,
                "priority": row.priority,
                "tags": row.tags,
                "created_at": row.created_at,
                "superseded_by": row.superseded_by,
            }
    yield ",".join(_json(memory) for memory in live.values())
    yield "]}"
