"""What the durable store holds, as text a test can search: sealed content opened with the
key store (content whose key was destroyed reads as unreadable), every other column as its
stored text. For erasure tests: "no row mentions X" must hold for plaintext and ciphertext."""

from __future__ import annotations

import sqlalchemy as sa

from config.settings import Settings
from core.crypto.cipher import memory_aad, summary_aad
from core.crypto.vault import Vault, attach, open_contents, vault_of
from core.store.db import make_engine
from tests.conftest import messages_in_store

UNREADABLE = "<unreadable: key destroyed>"
# (table, columns stored as they are): JSON and text columns that are never sealed.
PLAIN = (
    ("sessions", ("state", "subject_id", "settings")),
    ("state_history", ("changes",)),
    ("agent_results", ("result",)),
    ("memories", ("tags", "provenance")),
)


def session_contents(url: str, session: str) -> list[str]:
    """One session's messages, oldest first, content opened."""
    rows = sorted(
        (r for r in messages_in_store(url) if r.session_id == session), key=lambda r: r.seq
    )
    return [UNREADABLE if r.content is None else r.content for r in rows]


def store_texts(url: str) -> list[str]:
    texts = [UNREADABLE if r.content is None else r.content for r in messages_in_store(url)]
    engine = make_engine(url)
    vault_of(engine) or attach(engine, Vault(Settings(database_url=url)))
    with engine.connect() as connection:
        summaries = connection.execute(
            sa.text("SELECT tenant, session_id, covers_through_seq, text, key_id FROM summaries")
        ).all()
        memories = connection.execute(
            sa.text("SELECT tenant, subject_id, memory_id, content, key_id FROM memories")
        ).all()
        for table, columns in PLAIN:
            for column in columns:
                texts += [
                    str(value)
                    for value in connection.execute(
                        sa.text(f"SELECT CAST({column} AS TEXT) FROM {table}")
                    ).scalars()
                    if value is not None
                ]
    texts += [
        UNREADABLE if text is None else text
        for text in open_contents(
            engine, [(r.key_id, r.text, summary_aad(r[0], r[1], int(r[2]))) for r in summaries]
        )
    ]
    texts += [
        UNREADABLE if text is None else text
        for text in open_contents(
            engine, [(r.key_id, r.content, memory_aad(r[0], r[1], r[2])) for r in memories]
        )
    ]
    engine.dispose()
    return texts


def rows_mentioning(url: str, text: str) -> int:
    return sum(text in found for found in store_texts(url))
