"""The key store: one live data key per (tenant, subject), stored only wrapped by the KEK.

A data key is 256 random bits for AES-256-GCM, with a random ``key_id`` (never derived from the
subject). The subject appears here only as ``subject_ref`` (a keyed hash). Destroying a key
nulls its wrapped bytes and stamps ``destroyed_at``: every row sealed under it is unreadable
from then on, in the live database and in every replica, WAL archive and backup of it.

Caches: writers keep the subject's live key in process but confirm it inside every write
(``hold``), so a key destroyed by another process never seals new data. Readers ask the key
store on every read (one indexed query per read call, however many rows), so a row of a
destroyed key never opens again anywhere, from the moment the destroy commits.
"""

from __future__ import annotations

import secrets as random
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update

from config.settings import Settings
from core.crypto.cipher import new_data_key, unwrap, wrap
from core.crypto.secrets import KeySecrets, keyed_hash, load_secrets
from core.store.db import insert_for, make_engine, subject_keys
from core.store.db_errors import translate_errors

_live = subject_keys.c.destroyed_at.is_(None)


@dataclass(frozen=True, slots=True)
class DataKey:
    """An unwrapped data key (the key bytes never appear in a repr or a log)."""

    key_id: str
    tenant: str
    subject_ref: str
    key: bytes = field(repr=False)


def _wrap_aad(key_id: str, tenant: str, ref: str) -> bytes:
    # Binds a wrapped key to its row: swapping wrapped_key between rows fails to unwrap.
    return f"{key_id}/{tenant}/{ref}".encode()


class KeyStore:
    """Data keys in ``subject_keys`` (its own database or the content one)."""

    def __init__(self, engine: Engine, secrets: KeySecrets):
        self.engine = engine
        self.secrets = secrets
        self._lock = threading.Lock()
        self._writing: dict[tuple[str, str], DataKey] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        return cls(make_engine(settings.keystore_url), load_secrets(settings))

    def subject_ref(self, tenant: str, subject_id: str) -> str:
        return keyed_hash(self.secrets.hash_key, f"{tenant}/{subject_id}")

    def ensure_schema(self) -> None:
        """Create ``subject_keys`` in a separate key-store database (no-op if present)."""
        with translate_errors():
            subject_keys.create(self.engine, checkfirst=True)

    # --- keys for writing ---------------------------------------------------------------

    def key_for(self, tenant: str, subject_id: str) -> DataKey:
        """The subject's live data key, created on first use.

        Race-safe across processes: the partial unique index admits one live key per subject,
        so of two creators the second inserts nothing and reads the first one's key.
        """
        ref = self.subject_ref(tenant, subject_id)
        cached = self._writing.get((tenant, ref))
        if cached is not None:
            return cached
        with translate_errors(), self.engine.begin() as connection:
            found = self._select_live(connection, tenant, ref)
            if found is None:
                key_id = random.token_hex(16)
                connection.execute(
                    insert_for(connection, subject_keys)
                    .values(
                        key_id=key_id,
                        tenant=tenant,
                        subject_ref=ref,
                        kek_id=self.secrets.kek_id,
                        wrapped_key=wrap(
                            self.secrets.kek, new_data_key(), _wrap_aad(key_id, tenant, ref)
                        ),
                        created_at=datetime.now(UTC),
                    )
                    .on_conflict_do_nothing(
                        index_elements=["tenant", "subject_ref"], index_where=_live
                    )
                )
                found = self._select_live(connection, tenant, ref)
        assert found is not None  # inserted, or the concurrent creator's row
        with self._lock:
            self._writing[(tenant, ref)] = found
        return found

    def _select_live(self, connection: Connection, tenant: str, ref: str) -> DataKey | None:
        row = connection.execute(
            select(subject_keys).where(
                subject_keys.c.tenant == tenant, subject_keys.c.subject_ref == ref, _live
            )
        ).first()
        return None if row is None else self._unwrap(row)

    def _unwrap(self, row: Any) -> DataKey:
        key_id, tenant, ref = row.key_id, row.tenant, row.subject_ref
        key = unwrap(
            self.secrets.kek_by_id(row.kek_id), row.wrapped_key, _wrap_aad(key_id, tenant, ref)
        )
        return DataKey(key_id=key_id, tenant=tenant, subject_ref=ref, key=key)

    @contextmanager
    def hold(self) -> Iterator[KeyHold]:
        """A key-store transaction for one write: ``confirm`` the keys it seals under, then
        write (and commit) inside the block. See ``KeyHold``."""
        with translate_errors(), self.engine.begin() as connection:
            yield KeyHold(self, connection)

    def forget(self, key_id: str) -> None:
        """Drop ``key_id`` from this process's caches."""
        with self._lock:
            for subject, key in list(self._writing.items()):
                if key.key_id == key_id:
                    del self._writing[subject]

    # --- keys for reading ---------------------------------------------------------------

    def get(self, key_id: str) -> DataKey | None:
        """The data key ``key_id``, or None once it is destroyed (or never existed)."""
        return self.get_many([key_id]).get(key_id)

    def get_many(self, key_ids: Iterable[str]) -> dict[str, DataKey]:
        """The live keys among ``key_ids``, in one query."""
        wanted = sorted(set(key_ids))
        if not wanted:
            return {}
        with translate_errors(), self.engine.connect() as connection:
            rows = connection.execute(
                select(subject_keys).where(subject_keys.c.key_id.in_(wanted), _live)
            ).all()
        return {row.key_id: self._unwrap(row) for row in rows}

    # --- destruction and rotation -----------------------------------------------------------

    def destroy_subject(self, tenant: str, subject_id: str) -> list[str]:
        """Destroy the subject's keys; returns their ids (empty if it had none live).

        Call it outside any transaction that holds the subject's session rows: a drainer
        holding one of these keys (``hold``) commits first, and this waits for it.
        """
        where = (subject_keys.c.tenant == tenant) & (
            subject_keys.c.subject_ref == self.subject_ref(tenant, subject_id)
        )
        return self._destroy(where)

    def destroy_tenant(self, tenant: str) -> list[str]:
        """Destroy every key of ``tenant``; returns their ids."""
        return self._destroy(subject_keys.c.tenant == tenant)

    def _destroy(self, where: Any) -> list[str]:
        with translate_errors(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # A writer's FOR SHARE is held for one batch; much longer means a deadlock
                # with the caller's own locks, which must fail loudly rather than hang.
                connection.execute(text("SET LOCAL lock_timeout = '30s'"))
            destroyed = list(
                connection.execute(
                    update(subject_keys)
                    .where(where, _live)
                    .values(wrapped_key=None, kek_id=None, destroyed_at=datetime.now(UTC))
                    .returning(subject_keys.c.key_id)
                ).scalars()
            )
        for key_id in destroyed:
            self.forget(key_id)
        return sorted(destroyed)

    def rotate_kek(self, *, batch_size: int = 500) -> int:
        """Re-wrap every live data key not yet under the active KEK; returns how many.

        Data keys stay the same, so no content is rewritten. Run it after setting the new
        ``kek``/``kek_id`` and moving the old one to ``previous_keks``; once it returns 0, the
        old KEK can be dropped from ``previous_keks``.
        """
        active = self.secrets.kek_id
        rotated = 0
        while True:
            with translate_errors(), self.engine.begin() as connection:
                rows = connection.execute(
                    select(subject_keys)
                    .where(_live, subject_keys.c.kek_id != active)
                    .order_by(subject_keys.c.key_id)
                    .limit(batch_size)
                    .with_for_update()
                ).all()
                for row in rows:
                    key = self._unwrap(row)
                    connection.execute(
                        update(subject_keys)
                        .where(subject_keys.c.key_id == row.key_id)
                        .values(
                            kek_id=active,
                            wrapped_key=wrap(
                                self.secrets.kek,
                                key.key,
                                _wrap_aad(key.key_id, key.tenant, key.subject_ref),
                            ),
                        )
                    )
            rotated += len(rows)
            if len(rows) < batch_size:
                return rotated

    def dispose(self) -> None:
        self.engine.dispose()


class KeyHold:
    """Keys confirmed live in an open key-store transaction.

    ``confirm`` takes ``FOR SHARE`` on their rows, so a concurrent destroy waits until the
    writer's own transaction (run inside ``KeyStore.hold``) has committed: a key is destroyed
    before the write (the writer sees it gone and takes a new key) or after it (the rows are
    the subject's old data and go with it), never in between. This is what keeps a key that
    another process destroyed from sealing new data here, whatever this process cached.
    """

    def __init__(self, store: KeyStore, connection: Connection):
        self.store = store
        self.connection = connection

    def confirm(self, key_ids: Iterable[str]) -> set[str]:
        """Which of ``key_ids`` are live (and stay so until the hold ends); the others are
        dropped from the store's caches."""
        wanted = sorted(set(key_ids))  # sorted: a fixed lock order between writers
        if not wanted:
            return set()
        live = set(
            self.connection.execute(
                select(subject_keys.c.key_id)
                .where(subject_keys.c.key_id.in_(wanted), _live)
                .with_for_update(read=True)
            ).scalars()
        )
        for key_id in set(wanted) - live:
            self.store.forget(key_id)
        return live
