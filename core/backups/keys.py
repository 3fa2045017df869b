"""The keys of a backup.

- A subject's rows are sealed under the subject's own data key (core/crypto): destroying it
  in the key store (erasure) makes those frames unreadable in every backup ever taken.
- Rows without a subject are sealed under the backup's key, and the row index under the
  chain's index key: both random, stored in the manifest only wrapped by the KEK.

A restore reads data keys from a ``KeySource``: the live key store (the usual case) or a
key-store export (a disaster that took the key store too; core/backups/keyexport.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import select

from core.backups.frames import FrameKey
from core.crypto.cipher import new_data_key, unwrap, wrap
from core.crypto.keystore import DataKey, KeyStore
from core.crypto.secrets import KeySecrets
from core.store.db import subject_keys
from core.store.db_errors import translate_errors

BACKUP_KEY = "backup:"


def new_wrapped_key(secrets: KeySecrets, *, purpose: str) -> tuple[bytes, dict[str, str]]:
    """A fresh random key and its KEK-wrapped form for a manifest."""
    key = new_data_key()
    aad = f"memscribe-backup/{purpose}"
    wrapped = wrap(secrets.kek, key, aad.encode())
    return key, {
        "kek_id": secrets.kek_id,
        "aad": aad,
        "wrapped": base64.b64encode(wrapped).decode(),
    }


def unwrap_key(secrets: KeySecrets, wrapped: dict[str, str]) -> bytes:
    """A manifest's key (``CipherError`` with a KEK that is not the one it was wrapped by)."""
    kek = secrets.kek_by_id(wrapped["kek_id"])
    return unwrap(kek, base64.b64decode(wrapped["wrapped"]), wrapped["aad"].encode())


class SubjectFrameKeys:
    """The data key each subject's frames are sealed under, while a backup is written."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore
        self._keys: dict[tuple[str, str], FrameKey] = {}
        # (tenant, subject_ref) of every subject in this backup, and the key ids used.
        self.refs: set[tuple[str, str]] = set()
        self.key_ids: dict[str, tuple[str, str]] = {}

    def keys(self, owners: Iterable[tuple[str, str]]) -> dict[tuple[str, str], FrameKey]:
        wanted = set(owners)
        missing = [owner for owner in wanted if owner not in self._keys]
        if missing:
            # keys_for creates the key of a subject that has none (one transaction).
            for owner, key in self._keystore.keys_for(missing).items():
                self._keys[owner] = FrameKey(key.key_id, key.key)
                pair = (key.tenant, key.subject_ref)
                self.refs.add(pair)
                self.key_ids[key.key_id] = pair
        return {owner: self._keys[owner] for owner in wanted}

    def ref(self, tenant: str, subject_id: str) -> str:
        return self._keystore.subject_ref(tenant, subject_id)


class KeySource(Protocol):
    """Where a restore finds data keys."""

    def lookup(self, key_ids: Iterable[str]) -> dict[str, DataKey | None]:
        """Each known id's key, or None for a destroyed one; unknown ids are absent."""
        ...

    def rows(self, key_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The ``subject_keys`` rows of ``key_ids`` as stored (wrapped), to copy into the
        restored database's key store; destroyed keys come as their destroyed records."""
        ...


class LiveKeys:
    """The live key store (``MEMSCRIBE_KEYSTORE_URL``)."""

    def __init__(self, keystore: KeyStore) -> None:
        self._keystore = keystore
        self._cache: dict[str, DataKey | None] = {}

    def lookup(self, key_ids: Iterable[str]) -> dict[str, DataKey | None]:
        wanted = set(key_ids)
        if missing := [key_id for key_id in wanted if key_id not in self._cache]:
            known = {row["key_id"] for row in self.rows(missing)}
            live = self._keystore.get_many(known)
            for key_id in known:
                self._cache[key_id] = live.get(key_id)
        return {key_id: self._cache[key_id] for key_id in wanted if key_id in self._cache}

    def rows(self, key_ids: Iterable[str]) -> list[dict[str, Any]]:
        wanted = sorted(set(key_ids))
        found: list[dict[str, Any]] = []
        with translate_errors(), self._keystore.engine.connect() as connection:
            for start in range(0, len(wanted), 1000):
                part = wanted[start : start + 1000]
                rows = connection.execute(
                    select(subject_keys).where(subject_keys.c.key_id.in_(part))
                ).all()
                found.extend(dict(row._mapping) for row in rows)
        return found
