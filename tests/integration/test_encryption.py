"""Content encryption end to end on real Redis and PostgreSQL: a subject's messages, summaries
and memories are stored sealed, every read path opens them, and once the subject's key is
destroyed nothing of them reads, not even from the raw table files."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
import sqlalchemy as sa
from pydantic import SecretStr

from config.settings import Settings
from core.client import MemoryClient
from core.crypto.cipher import CipherError, message_aad, open_sealed
from core.crypto.keystore import KeyStore
from core.log.drainer import Drainer
from core.memories.similarity import normalize
from core.store.db import make_engine, memories, messages, subject_keys, summaries
from core.summaries import store as summary_store
from tests.conftest import SettingsFactory
from worker.keystore import ensure_keystore


def _b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def enc_settings(make_settings: SettingsFactory, pg_database: str) -> Settings:
    return make_settings(database_url=pg_database, kek=_b64(), kek_id="t1", hash_key=_b64())


@pytest.fixture
def enc(
    redis_client: redis.Redis, enc_settings: Settings
) -> Iterator[tuple[MemoryClient, Drainer]]:
    client = MemoryClient(redis=redis_client, settings=enc_settings)
    drainer = Drainer(redis=client.redis, engine=client.engine, settings=enc_settings)
    yield client, drainer
    client.engine.dispose()


def _raw(url: str, table: sa.Table, **where: str) -> list[sa.Row[object]]:
    engine = make_engine(url)
    query = sa.select(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    with engine.connect() as connection:
        rows = list(connection.execute(query))
    engine.dispose()
    return rows


def _fill(client: MemoryClient, drainer: Drainer, *, count: int = 5) -> list[str]:
    """Alice's session (the subject named on the first append only) and Bob's plain one."""
    texts = [f"alice secret {i} {uuid.uuid4().hex}" for i in range(count)]
    for i, text in enumerate(texts):
        client.append("s-alice", "user", text, subject_id="alice" if i == 0 else None)
    for i in range(3):
        client.append("s-bob", "user", f"bob plain {i}")
    assert drainer.flush(timeout_s=30) == 0
    return texts


def test_a_subjects_messages_are_sealed_and_every_read_opens_them(
    enc: tuple[MemoryClient, Drainer], enc_settings: Settings
) -> None:
    """Sealed at rest (one key for the subject), plaintext through restore and history."""
    client, drainer = enc
    texts = _fill(client, drainer)
    alice = _raw(enc_settings.database_url, messages, session_id="s-alice")
    assert len({row.key_id for row in alice}) == 1 and alice[0].key_id is not None
    assert all(row.content.startswith("v1:") for row in alice)
    bob = _raw(enc_settings.database_url, messages, session_id="s-bob")
    assert {row.key_id for row in bob} == {None} and bob[0].content == "bob plain 0"
    client.redis.flushdb()  # Redis forgets: every read below comes from PostgreSQL
    context = client.context("s-alice")
    assert context.from_durable_store and [m.content for m in context.messages] == texts
    client.redis.flushdb()
    page = client.history("s-alice", limit=50)
    assert page.from_durable_store and [m.content for m in page.messages] == texts


def test_after_destroy_the_rows_read_as_gone_and_new_data_gets_a_new_key(
    enc: tuple[MemoryClient, Drainer], enc_settings: Settings
) -> None:
    """Another process destroys the key the drainer cached: old rows are skipped, the next
    write is sealed under a fresh key and reads back."""
    client, drainer = enc
    _fill(client, drainer)
    old_key = _raw(enc_settings.database_url, messages, session_id="s-alice")[0].key_id
    other_process = KeyStore.from_settings(enc_settings)
    assert other_process.destroy_subject("default", "alice") == [old_key]
    assert other_process.get(old_key) is None
    client.redis.flushdb()
    assert client.history("s-alice").messages == []
    assert [m.content for m in client.history("s-bob").messages][:1] == ["bob plain 0"]
    client.redis.flushdb()
    client.append("s-alice", "user", "after the erasure")  # restored session: subject alice
    assert drainer.flush(timeout_s=30) == 0
    new = _raw(enc_settings.database_url, messages, session_id="s-alice")
    fresh = {row.key_id for row in new} - {old_key}
    assert len(fresh) == 1 and fresh.pop() is not None
    client.redis.flushdb()
    assert [m.content for m in client.history("s-alice").messages] == ["after the erasure"]
    other_process.dispose()


def test_summaries_of_a_subjects_session_are_sealed(
    enc: tuple[MemoryClient, Drainer], enc_settings: Settings
) -> None:
    """save_summary seals under the session's subject; reads open; destroyed: no summary."""
    client, drainer = enc
    _fill(client, drainer)
    record = summary_store.SummaryRecord(
        tenant="default",
        session_id="s-alice",
        covers_through_seq=3,
        from_seq=1,
        text="Alice asked about her secret refund.",
        tokens=9,
        folded_tokens=30,
        model="test",
        created_at=datetime.now(UTC),
    )
    engine = client.engine
    assert summary_store.save_summary(engine, record, usage="never").text == record.text
    assert summary_store.save_summary(engine, record, usage="never").text == record.text
    (row,) = _raw(enc_settings.database_url, summaries)
    assert row.key_id and row.text.startswith("v1:") and "refund" not in row.text
    latest = summary_store.latest_summaries(engine, tenant="default", session_id="s-alice", limit=5)
    assert [s.text for s in latest] == [record.text]
    KeyStore.from_settings(enc_settings).destroy_subject("default", "alice")
    assert summary_store.list_summaries(engine, tenant="default", session_id="s-alice") == []
    durable = summary_store.load_context(
        engine, tenant="default", session_id="s-alice", max_messages=30, max_tokens=4000
    )
    assert durable is not None and durable.summary is None and durable.messages == []


def test_memories_are_sealed_with_a_keyed_content_hash(
    enc: tuple[MemoryClient, Drainer], enc_settings: Settings
) -> None:
    """Memory content is sealed, its hash is not the dictionary-attackable sha-256, the view
    warms from the store in plaintext, and a destroyed subject recalls nothing."""
    client, drainer = enc
    client.remember("alice", "Prefers window seats")
    client.remember("bob", "Likes tea", tags=["drink"])
    assert drainer.flush(timeout_s=30) == 0
    rows = {row.subject_id: row for row in _raw(enc_settings.database_url, memories)}
    plain_hash = hashlib.sha256(normalize("Prefers window seats").encode()).hexdigest()
    assert rows["alice"].content.startswith("v1:") and rows["alice"].content_hash != plain_hash
    client.redis.flushdb()
    assert [m.content for m in client.recall("alice")] == ["Prefers window seats"]
    KeyStore.from_settings(enc_settings).destroy_tenant("default")
    client.redis.flushdb()
    assert client.recall("alice") == [] and client.recall("bob") == []


def test_kek_rotation_keeps_every_row_readable_and_changes_no_content_byte(
    enc: tuple[MemoryClient, Drainer], enc_settings: Settings, redis_client: redis.Redis
) -> None:
    """memscribe keystore rotate re-wraps keys only: the content column is byte-identical."""
    client, drainer = enc
    texts = _fill(client, drainer)
    before = [
        (r.message_id, r.content, r.key_id) for r in _raw(enc_settings.database_url, messages)
    ]
    wrapped_before = {
        r.key_id: r.wrapped_key for r in _raw(enc_settings.database_url, subject_keys)
    }
    old = enc_settings.kek.get_secret_value()
    rotated = enc_settings.model_copy(
        update={"kek": SecretStr(_b64()), "kek_id": "t2", "previous_keks": SecretStr(f"t1:{old}")}
    )
    store = KeyStore.from_settings(rotated)
    assert store.rotate_kek() == 1
    after = [(r.message_id, r.content, r.key_id) for r in _raw(enc_settings.database_url, messages)]
    assert sorted(after) == sorted(before)
    (key_row,) = _raw(enc_settings.database_url, subject_keys)
    assert key_row.kek_id == "t2" and key_row.wrapped_key != wrapped_before[key_row.key_id]
    # A process that knows only the new KEK reads everything.
    only_new = rotated.model_copy(update={"previous_keks": SecretStr("")})
    reader = MemoryClient(redis=redis_client, settings=only_new)
    client.redis.flushdb()
    assert [m.content for m in reader.history("s-alice").messages] == texts
    reader.engine.dispose()
    store.dispose()


def test_a_separate_key_store_database_end_to_end(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis
) -> None:
    """Keys in wt_crypto_keys, content in the test database: drain, read, destroy."""
    keys_url = str(sa.engine.make_url(pg_database).set(database="wt_crypto_keys"))
    admin = sa.create_engine(
        sa.engine.make_url(pg_database).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text('DROP DATABASE IF EXISTS "wt_crypto_keys" WITH (FORCE)'))
        connection.execute(sa.text('CREATE DATABASE "wt_crypto_keys"'))
    admin.dispose()
    settings = make_settings(
        database_url=pg_database, keystore_url=keys_url, kek=_b64(), hash_key=_b64()
    )
    assert ensure_keystore(settings)
    client = MemoryClient(redis=redis_client, settings=settings)
    drainer = Drainer(redis=client.redis, engine=client.engine, settings=settings)
    texts = _fill(client, drainer)
    assert _raw(pg_database, subject_keys) == [] and len(_raw(keys_url, subject_keys)) == 1
    client.redis.flushdb()
    assert [m.content for m in client.history("s-alice").messages] == texts
    KeyStore.from_settings(settings).destroy_subject("default", "alice")
    client.redis.flushdb()
    assert client.history("s-alice").messages == []
    client.engine.dispose()


def _storage(url: str, query: str, aad_session: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The messages table's main file after a CHECKPOINT, and a COPY of the session's rows
    as (content, aad)."""
    engine = make_engine(url)
    with engine.connect() as connection:
        connection.execute(sa.text("CHECKPOINT"))
        raw = connection.execute(
            sa.text("SELECT pg_read_binary_file(pg_relation_filepath('messages'))")
        ).scalar_one()
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        out = io.StringIO()
        cursor.copy_expert(query, out)
        cursor.close()
    engine.dispose()
    copied = []
    for line in out.getvalue().splitlines():
        message_id, content = line.split("\t")
        copied.append((content, message_aad("default", aad_session, message_id)))
    return bytes(raw), copied


def test_raw_storage_of_an_erased_subject_holds_nothing_readable(
    enc: tuple[MemoryClient, Drainer], enc_settings: Settings
) -> None:
    """After the key is destroyed, neither the relation file nor a COPY of the content column
    holds the subject's plaintext, and nothing in them opens with any key left in the store."""
    client, drainer = enc
    texts = _fill(client, drainer, count=20)
    client.remember("carol", "Carol keeps a key too")  # another live key to try
    assert drainer.flush(timeout_s=30) == 0
    copy = "COPY (SELECT message_id, content FROM messages WHERE session_id = 's-alice') TO STDOUT"
    raw, copied = _storage(enc_settings.database_url, copy, "s-alice")
    assert b"bob plain 0" in raw  # the right file: the plaintext session is in it
    KeyStore.from_settings(enc_settings).destroy_subject("default", "alice")
    raw, copied = _storage(enc_settings.database_url, copy, "s-alice")
    assert len(copied) == 20
    for text in texts:
        assert text.encode() not in raw and text.split()[-1].encode() not in raw
        assert all(text not in content for content, _ in copied)
    store = KeyStore.from_settings(enc_settings)
    live = store.get_many(
        row.key_id
        for row in _raw(enc_settings.database_url, subject_keys)
        if row.destroyed_at is None
    )
    assert len(live) == 1  # carol's
    in_file = {match.decode() for match in re.findall(rb"v1:[A-Za-z0-9+/=]+", raw)}
    assert len(in_file) >= 20
    candidates = {content for content, _ in copied} | in_file
    aads = [aad for _, aad in copied]
    for sealed in candidates:
        for key in live.values():
            for aad in aads:
                with pytest.raises(CipherError):
                    open_sealed(key.key, sealed, aad)
    store.dispose()
