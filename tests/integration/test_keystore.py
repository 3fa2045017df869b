"""The key store on real PostgreSQL: one live key per subject, destroyed for good, KEK rotation,
and a key store in a database of its own."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from config.settings import Settings
from core.crypto.keystore import KeyStore
from core.store.db import make_engine, subject_keys
from tests.conftest import ROOT, SettingsFactory, settings_env
from worker.keystore import ensure_keystore


def _b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def key_settings(make_settings: SettingsFactory, pg_database: str) -> Settings:
    """Settings with a real (random) KEK and hash key."""
    return make_settings(database_url=pg_database, kek=_b64(), kek_id="t1", hash_key=_b64())


@pytest.fixture
def store(key_settings: Settings) -> Iterator[KeyStore]:
    keystore = KeyStore.from_settings(key_settings)
    yield keystore
    keystore.dispose()


def _rows(url: str) -> list[sa.Row[object]]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = list(connection.execute(sa.select(subject_keys).order_by(subject_keys.c.key_id)))
    engine.dispose()
    return rows


def test_one_live_key_per_subject_and_none_of_the_subject_in_the_row(
    store: KeyStore, key_settings: Settings
) -> None:
    """key_for creates once, returns the same key after; the row holds no subject id."""
    first = store.key_for("acme", "user-1")
    fresh = KeyStore.from_settings(key_settings)  # no cache: reads the stored key
    assert fresh.key_for("acme", "user-1") == first
    assert store.key_for("acme", "user-2").key_id != first.key_id
    assert store.get(first.key_id) == first and len(first.key) == 32
    (row, _) = _rows(key_settings.database_url)
    assert "user-1" not in repr(tuple(row)) and row.wrapped_key != first.key
    assert len(first.key_id) == 32 and row.kek_id == "t1"
    assert "key=" not in repr(first)  # the key bytes never show in a repr
    fresh.dispose()


def test_destroy_overwrites_the_key_and_the_next_write_gets_a_new_one(
    store: KeyStore, key_settings: Settings
) -> None:
    """destroy_subject nulls the wrapped key; get is None; key_for makes a new key id."""
    old = store.key_for("acme", "user-1")
    other = store.key_for("acme", "user-2")
    reader = KeyStore.from_settings(key_settings)  # another process: its own caches
    assert reader.get(old.key_id) == old
    assert store.destroy_subject("acme", "user-1") == [old.key_id]
    assert store.destroy_subject("acme", "user-1") == []  # idempotent
    assert store.get(old.key_id) is None and reader.get(old.key_id) is None
    row = next(r for r in _rows(key_settings.database_url) if r.key_id == old.key_id)
    assert row.wrapped_key is None and row.kek_id is None and row.destroyed_at is not None
    new = store.key_for("acme", "user-1")
    assert new.key_id != old.key_id and new.key != old.key
    assert store.get(other.key_id) == other
    assert sorted(store.destroy_tenant("acme")) == sorted([new.key_id, other.key_id])
    assert store.get(other.key_id) is None
    reader.dispose()


def test_concurrent_key_for_from_many_threads_gives_one_key(key_settings: Settings) -> None:
    """Eight key stores (no shared cache) asking at once: one key, one live row."""
    stores = [KeyStore.from_settings(key_settings) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    found: list[str] = []

    def ask(keystore: KeyStore) -> None:
        barrier.wait()
        found.append(keystore.key_for("acme", "racer").key_id)

    threads = [threading.Thread(target=ask, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(found) == 8 and len(set(found)) == 1
    assert len(_rows(key_settings.database_url)) == 1
    for keystore in stores:
        keystore.dispose()


_ASK = """
import sys
from config.settings import Settings
from core.crypto.keystore import KeyStore
store = KeyStore.from_settings(Settings())
print(store.key_for("acme", "proc-racer").key_id)
"""


def test_concurrent_key_for_from_two_processes_gives_one_key(key_settings: Settings) -> None:
    """Two processes creating the subject's key at once agree on it."""
    env = {**os.environ, **settings_env(key_settings)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _ASK], env=env, cwd=ROOT, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    ids = [proc.communicate(timeout=60)[0].decode().strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert ids[0] == ids[1] and len(ids[0]) == 32


def test_rotation_rewraps_every_live_key_and_keeps_them(
    store: KeyStore, key_settings: Settings
) -> None:
    """rotate_kek re-wraps under the new KEK; the data keys are unchanged; the old KEK can go."""
    keys = [store.key_for("acme", f"user-{i}") for i in range(5)]
    store.destroy_subject("acme", "user-0")
    old_kek = key_settings.kek.get_secret_value()
    rotated = key_settings.model_copy(
        update={
            "kek": SecretStr(_b64()),
            "kek_id": "t2",
            "previous_keks": SecretStr(f"t1:{old_kek}"),
        }
    )
    new_store = KeyStore.from_settings(rotated)
    assert new_store.rotate_kek(batch_size=2) == 4
    assert new_store.rotate_kek() == 0
    live = [r for r in _rows(key_settings.database_url) if r.destroyed_at is None]
    assert {r.kek_id for r in live} == {"t2"}
    without_old = KeyStore.from_settings(
        rotated.model_copy(update={"previous_keks": SecretStr("")})
    )
    for key in keys[1:]:
        assert without_old.get(key.key_id) == key
    assert without_old.get(keys[0].key_id) is None
    new_store.dispose()
    without_old.dispose()


def test_a_key_store_in_its_own_database(make_settings: SettingsFactory, pg_database: str) -> None:
    """MEMSCRIBE_KEYSTORE_URL: keys live there, the content database's table stays empty."""
    keys_url = str(make_url(pg_database).set(database="wt_crypto_keys"))
    admin = sa.create_engine(
        make_url(pg_database).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text('DROP DATABASE IF EXISTS "wt_crypto_keys" WITH (FORCE)'))
        connection.execute(sa.text('CREATE DATABASE "wt_crypto_keys"'))
    admin.dispose()
    settings = make_settings(
        database_url=pg_database, keystore_url=keys_url, kek=_b64(), hash_key=_b64()
    )
    assert ensure_keystore(settings) is True
    assert ensure_keystore(settings) is True  # idempotent
    store = KeyStore.from_settings(settings)
    key = store.key_for("acme", "user-1")
    assert [r.key_id for r in _rows(keys_url)] == [key.key_id]
    assert _rows(pg_database) == []
    assert store.destroy_subject("acme", "user-1") == [key.key_id]
    store.dispose()


def test_a_destroy_waits_for_a_writer_holding_the_key(
    store: KeyStore, key_settings: Settings
) -> None:
    """A writer's hold (FOR SHARE on the tenant's epoch) orders a concurrent destroy after its
    commit, and a destroy elsewhere drops the writer's cached key at its next hold."""
    key = store.key_for("acme", "user-1")
    destroyer = KeyStore.from_settings(key_settings)
    destroyed: list[list[str]] = []
    with store.hold() as hold:
        hold.confirm(["acme"])
        thread = threading.Thread(
            target=lambda: destroyed.append(destroyer.destroy_subject("acme", "user-1"))
        )
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and destroyed == []  # waiting for the writer's commit
    thread.join(timeout=10)
    assert destroyed == [[key.key_id]]
    assert store.key_for("acme", "user-1").key_id != key.key_id  # destroyed here: cache dropped
    writer = KeyStore.from_settings(key_settings)  # a writer in another process
    cached = writer.key_for("acme", "user-2")
    destroyer.destroy_subject("acme", "user-2")
    with writer.hold() as hold:
        hold.confirm(["acme"])  # the epoch moved: the cached key is dropped
    assert writer.key_for("acme", "user-2").key_id != cached.key_id
    writer.dispose()
    destroyer.dispose()
