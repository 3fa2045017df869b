"""Sealing a drained batch: the content of every subject's message and memory is encrypted
under the subject's data key before the batch is written (docs/encryption.md).

A message belongs to its session's subject. A WAL record carries ``subject_id`` only when the
append named it, so the subject of the other records comes from another record of the same
session in the batch or, failing that, from the ``sessions`` row (one query per batch, only
for sessions the batch cannot answer). Messages of sessions without a subject stay plaintext.
"""

from __future__ import annotations

from dataclasses import fields, replace
from operator import attrgetter

from sqlalchemy import Engine, select, tuple_

from core.crypto.cipher import memory_aad, message_aad
from core.crypto.vault import Sealer, content_digest
from core.log.entries import Known
from core.log.report import Entry
from core.log.repository import MessageRow
from core.memories.similarity import normalize
from core.memories.wal import RememberRow
from core.store.db import sessions
from core.store.db_errors import translate_errors

Items = list[tuple[Entry, Known]]
_FIELD_NAMES = tuple(field.name for field in fields(MessageRow))
_MESSAGE_FIELDS = attrgetter(*_FIELD_NAMES)
_CONTENT, _KEY_ID = _FIELD_NAMES.index("content"), _FIELD_NAMES.index("key_id")


def seal_items(engine: Engine, sealer: Sealer, items: Items) -> Items:
    """``items`` with message and memory content sealed (same entries, same order)."""
    subjects = _session_subjects(
        engine, [known.row for _, known in items if isinstance(known.row, MessageRow)]
    )
    wanted = {(tenant, subject) for (tenant, _), subject in subjects.items()}
    wanted |= {
        (known.row.tenant, known.row.subject_id)
        for _, known in items
        if isinstance(known.row, RememberRow)
    }
    sealer.prepare(wanted)  # one FOR SHARE query for every key of the batch
    sealed: Items = []
    for entry, known in items:
        row = known.row
        if isinstance(row, MessageRow):
            subject = subjects.get((row.tenant, row.session_id))
            if subject is not None:
                aad = message_aad(row.tenant, row.session_id, row.message_id)
                key_id, content = sealer.seal(row.tenant, subject, row.content, aad)
                known = Known(known.kind, _sealed_message(row, content, key_id), known.fields)
        elif isinstance(row, RememberRow):
            key = sealer.key(row.tenant, row.subject_id)
            aad = memory_aad(row.tenant, row.subject_id, row.memory_id)
            key_id, content = sealer.seal(row.tenant, row.subject_id, row.content, aad)
            digest = content_digest(key, normalize(row.content))
            known = replace(
                known, row=replace(row, content=content, key_id=key_id, content_hash=digest)
            )
        sealed.append((entry, known))
    return sealed


def _sealed_message(row: MessageRow, content: str, key_id: str) -> MessageRow:
    # Not dataclasses.replace: this runs once per drained message, and replace's generic path
    # cost as much as the encryption itself (bench section "encryption"). Still generic over
    # the fields, so a field added to MessageRow is carried over, never dropped.
    values = list(_MESSAGE_FIELDS(row))
    values[_CONTENT], values[_KEY_ID] = content, key_id
    return MessageRow(*values)


def _session_subjects(engine: Engine, rows: list[MessageRow]) -> dict[tuple[str, str], str]:
    """(tenant, session_id) -> subject_id for the sessions of ``rows`` that have one."""
    found: dict[tuple[str, str], str] = {}
    for row in rows:
        if row.subject_id is not None:
            found.setdefault((row.tenant, row.session_id), row.subject_id)
    unknown = sorted({(row.tenant, row.session_id) for row in rows} - set(found))
    if unknown:
        with translate_errors(), engine.connect() as connection:
            for tenant, session_id, subject_id in connection.execute(
                select(sessions.c.tenant, sessions.c.session_id, sessions.c.subject_id).where(
                    tuple_(sessions.c.tenant, sessions.c.session_id).in_(unknown),
                    sessions.c.subject_id.is_not(None),
                )
            ):
                found[(tenant, session_id)] = subject_id
    return found
