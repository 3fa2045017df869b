"""The key store: one live data key per (tenant, subject), stored only wrapped by the KEK.

A data key is 256 random bits for AES-256-GCM, with a random ``key_id`` (never derived from the
subject). The subject appears here only as ``subject_ref`` (a keyed hash). Destroying a key
nulls its wrapped bytes and stamps ``destroyed_at``: every row sealed under it is unreadable
from then on, in the live database and in every replica, WAL archive and backup of it.

Caches: writers keep the subject's live key in process. Every destruction bumps its tenant's
row in ``key_epochs`` in the same transaction, and every write confirms its tenants' epochs
under ``FOR SHARE`` (``hold``), dropping keys cached under an older epoch: a key destroyed by
another process never seals new data, at the cost of one row per tenant per write. Readers
ask the key store on every read (one indexed query per read call, however many rows), so a
row of a destroyed key never opens again anywhere, from the moment the destroy commits.
"""

from __future__ import annotations

import secrets as random
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, text, tuple_, update

from config.settings import Settings
from core.crypto.cipher import new_data_key, unwrap, wrap
from core.crypto.secrets import KeySecrets, keyed_hash, load_secrets
from core.store.db import insert_for, key_epochs, make_engine, subject_keys
from core.store.db_errors import translate_errors

_live = subject_keys.c.destroyed_at.is_(None)
_REF_CACHE_SIZE = 100_000


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


def unwrap_row(secrets: KeySecrets, row: Any) -> DataKey:
    """The data key of a live ``subject_keys`` row (attribute access: a Row or a namespace)."""
    key_id, tenant, ref = row.key_id, row.tenant, row.subject_ref
    key = unwrap(secrets.kek_by_id(row.kek_id), row.wrapped_key, _wrap_aad(key_id, tenant, ref))
    return DataKey(key_id=key_id, tenant=tenant, subject_ref=ref, key=key)


class KeyStore:
    """Data keys in ``subject_keys`` (its own database or the content one)."""

    def __init__(self, engine: Engine, secrets: KeySecrets):
        self.engine = engine
        self.secrets = secrets
        self._lock = threading.Lock()
        self._writing: dict[tuple[str, str], DataKey] = {}
        self._refs: dict[tuple[str, str], str] = {}
        # tenant -> the key_epochs value the cached keys of that tenant were read under.
        self._epochs: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        return cls(make_engine(settings.keystore_url), load_secrets(settings))

    def subject_ref(self, tenant: str, subject_id: str) -> str:
        # Cached: a drained batch asks for every subject in it, batch after batch.
        ref = self._refs.get((tenant, subject_id))
        if ref is None:
            if len(self._refs) >= _REF_CACHE_SIZE:
                self._refs.clear()
            ref = self._refs[(tenant, subject_id)] = keyed_hash(
                self.secrets.hash_key, f"{tenant}/{subject_id}"
            )
        return ref

    def ensure_schema(self) -> None:
        """Create the key store's tables in a separate database (no-op if present)."""
        with translate_errors():
            subject_keys.create(self.engine, checkfirst=True)
            key_epochs.create(self.engine, checkfirst=True)

    # --- keys for writing ---------------------------------------------------------------

    def key_for(self, tenant: str, subject_id: str) -> DataKey:
        """The subject's live data key, created on first use.

        Race-safe across processes: the partial unique index admits one live key per subject,
        so of two creators the second inserts nothing and reads the first one's key. Never a
        key destroyed before the call, whichever process destroyed it (the tenant's epoch is
        checked); to keep it live while writing, seal inside ``hold`` (``Sealer``).
        """
        with self.hold() as hold:
            hold.confirm([tenant])
        return self.keys_for([(tenant, subject_id)])[(tenant, subject_id)]

    def keys_for(self, subjects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], DataKey]:
        """The live keys of many subjects (created where missing) in one transaction. Trusts
        this process's cache: call it after ``KeyHold.confirm`` of the subjects' tenants."""
        refs = {subject: self.subject_ref(*subject) for subject in set(subjects)}
        found = {s: key for s, ref in refs.items() if (key := self._writing.get((s[0], ref)))}
        missing = {s: ref for s, ref in refs.items() if s not in found}
        if not missing:
            return found
        by_ref = {(subject[0], ref): subject for subject, ref in missing.items()}
        with self._lock:
            seen = {tenant: self._epochs.get(tenant) for tenant, _ in by_ref}
        with translate_errors(), self.engine.begin() as connection:
            # The epoch first, then the keys: a key read after the epoch is at least as new.
            if unknown := {tenant for tenant, epoch in seen.items() if epoch is None}:
                fetched = self._read_epochs(connection, unknown)
                self._adopt_epochs(fetched)
                seen.update(fetched)
            live = self._select_live(connection, list(by_ref))
            absent = sorted(set(by_ref) - set(live))  # sorted: a fixed lock order
            if absent:
                connection.execute(
                    insert_for(connection, subject_keys)
                    .values([self._new_row(tenant, ref) for tenant, ref in absent])
                    .on_conflict_do_nothing(
                        index_elements=["tenant", "subject_ref"], index_where=_live
                    )
                )
                live.update(self._select_live(connection, absent))
        with self._lock:
            # Cache only under the epoch we read under: if another thread saw the tenant's
            # epoch move meanwhile, these keys may be destroyed ones.
            for pair, key in live.items():
                if self._epochs.get(pair[0]) == seen[pair[0]]:
                    self._writing[pair] = key
        found.update({by_ref[pair]: key for pair, key in live.items()})
        return found

    def _read_epochs(self, connection: Connection, tenants: set[str]) -> dict[str, int]:
        """The tenants' epochs, their rows created at 0 if missing."""
        if not tenants:
            return {}
        connection.execute(
            insert_for(connection, key_epochs)
            .values([{"tenant": tenant, "epoch": 0} for tenant in sorted(tenants)])
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        return self._epochs_of(connection, tenants, lock=False)

    def _epochs_of(
        self, connection: Connection, tenants: set[str], *, lock: bool
    ) -> dict[str, int]:
        query = select(key_epochs.c.tenant, key_epochs.c.epoch).where(
            key_epochs.c.tenant.in_(sorted(tenants))  # sorted: a fixed lock order
        )
        return dict(connection.execute(query.with_for_update(read=True) if lock else query).all())

    def _adopt_epochs(self, current: dict[str, int]) -> None:
        """Take ``current`` as the tenants' epochs, dropping keys cached under another one.
        One step under the lock: no thread sees the new epoch beside an old key."""
        with self._lock:
            for tenant, epoch in current.items():
                if self._epochs.get(tenant) != epoch:
                    for subject in [s for s in self._writing if s[0] == tenant]:
                        del self._writing[subject]
                    self._epochs[tenant] = epoch

    def _new_row(self, tenant: str, ref: str) -> dict[str, Any]:
        key_id = random.token_hex(16)
        return {
            "key_id": key_id,
            "tenant": tenant,
            "subject_ref": ref,
            "kek_id": self.secrets.kek_id,
            "wrapped_key": wrap(self.secrets.kek, new_data_key(), _wrap_aad(key_id, tenant, ref)),
            "created_at": datetime.now(UTC),
        }

    def _select_live(
        self, connection: Connection, pairs: list[tuple[str, str]]
    ) -> dict[tuple[str, str], DataKey]:
        """(tenant, subject_ref) -> live key, for those of ``pairs`` that have one."""
        rows = connection.execute(
            select(subject_keys).where(
                tuple_(subject_keys.c.tenant, subject_keys.c.subject_ref).in_(pairs), _live
            )
        ).all()
        return {(row.tenant, row.subject_ref): self._unwrap(row) for row in rows}

    def _unwrap(self, row: Any) -> DataKey:
        return unwrap_row(self.secrets, row)

    @contextmanager
    def hold(self) -> Iterator[KeyHold]:
        """A key-store transaction for one write: ``confirm`` the keys it seals under, then
        write (and commit) inside the block. See ``KeyHold``."""
        with translate_errors(), self.engine.begin() as connection:
            yield KeyHold(self, connection)

    def forget_tenant(self, tenant: str) -> None:
        """Drop every cached key of ``tenant`` (and the epoch they were read under)."""
        with self._lock:
            self._epochs.pop(tenant, None)
            for subject in [s for s in self._writing if s[0] == tenant]:
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
        return self._destroy(tenant, where)

    def destroy_tenant(self, tenant: str) -> list[str]:
        """Destroy every key of ``tenant``; returns their ids."""
        return self._destroy(tenant, subject_keys.c.tenant == tenant)

    def _destroy(self, tenant: str, where: Any) -> list[str]:
        with translate_errors(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # A writer's FOR SHARE is held for one batch; much longer means a deadlock
                # with the caller's own locks, which must fail loudly rather than hang.
                connection.execute(text("SET LOCAL lock_timeout = '30s'"))
            # The epoch first: this waits for every writer holding the tenant (KeyHold), and
            # tells every process's cache that the tenant's keys changed.
            bump = insert_for(connection, key_epochs).values(tenant=tenant, epoch=1)
            connection.execute(
                bump.on_conflict_do_update(
                    index_elements=["tenant"], set_={"epoch": key_epochs.c.epoch + 1}
                )
            )
            destroyed = list(
                connection.execute(
                    update(subject_keys)
                    .where(where, _live)
                    .values(wrapped_key=None, kek_id=None, destroyed_at=datetime.now(UTC))
                    .returning(subject_keys.c.key_id)
                ).scalars()
            )
        self.forget_tenant(tenant)
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
    """The tenants' key epochs, locked for one write.

    ``confirm`` takes ``FOR SHARE`` on the tenants' ``key_epochs`` rows, so a concurrent
    destroy (which bumps the row first) waits until the writer's own transaction, run inside
    ``KeyStore.hold``, has committed: a key is destroyed before the write (the epoch moved,
    the cached keys are dropped and the writer takes the live ones) or after it (the rows are
    the subject's old data and go with it), never in between.
    """

    def __init__(self, store: KeyStore, connection: Connection):
        self.store = store
        self.connection = connection

    def confirm(self, tenants: Iterable[str]) -> None:
        """Lock the tenants' epochs; drop cached keys read under an older one."""
        wanted = set(tenants)
        if not wanted:
            return
        current = self.store._epochs_of(self.connection, wanted, lock=True)
        if missing := wanted - set(current):  # never asked for a key yet: no row to lock
            # Created in a transaction of its own: written on the hold's connection, the row
            # would make SQLite's single writer wait for this hold, and the write inside it
            # would then wait for the hold.
            with self.store.engine.begin() as connection:
                self.store._read_epochs(connection, missing)
            current.update(self.store._epochs_of(self.connection, missing, lock=True))
            # A row that vanished (a key store restored or emptied) says nothing about the
            # keys cached here: drop them rather than trust a reset epoch.
            self.store._adopt_epochs({tenant: -1 for tenant in missing})
        self.store._adopt_epochs(current)
