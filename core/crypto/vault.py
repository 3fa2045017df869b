"""Content encryption as the stores use it: seal what a writer stores, open what a reader
loads, and the per-engine registry that lets every store function find the key store.

Every component that holds the durable engine also holds settings (the drainer, the client,
the summarizer, consolidation), and each calls ``vault_for(engine, settings)`` once; the
store functions below them take only the engine and find the vault with ``vault_of``. So one
process has one key cache per database, and no signature between the client and the SQL had
to grow a key-store argument.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from sqlalchemy import Engine

from config.settings import Settings
from core.crypto.cipher import CipherError, open_sealed, seal
from core.crypto.keystore import DataKey, KeyHold, KeyStore
from core.crypto.secrets import keyed_hash
from core.errors import PermanentError
from core.store.db import make_engine

log = logging.getLogger(__name__)


class Vault:
    """The key store of one database, and whether new content is encrypted."""

    def __init__(self, settings: Settings, *, engine: Engine | None = None):
        self.encrypt = settings.encrypt_content
        self._settings = settings
        # The key store shares the content engine's pool when it lives in the same database.
        self._engine = engine if settings.keystore_url == settings.database_url else None
        self._store: KeyStore | None = None
        self._lock = threading.Lock()

    @property
    def keystore(self) -> KeyStore:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    store = KeyStore.from_settings(self._settings)
                    if self._engine is not None:
                        store.engine.dispose()
                        store.engine = self._engine
                    self._store = store
        return self._store

    @contextmanager
    def sealer(self) -> Iterator[Sealer]:
        """Seal content for one write; run the write (and its commit) inside the block."""
        with self.keystore.hold() as hold:
            yield Sealer(self.keystore, hold)

    def open_many(self, items: Sequence[tuple[str | None, str, bytes]]) -> list[str | None]:
        """``(key_id, stored, aad)`` -> plaintext; None where the key is destroyed (the row
        reads as gone) or the value does not open (logged, without its content)."""
        keys = self.keystore.get_many({key_id for key_id, _, _ in items if key_id})
        opened: list[str | None] = []
        for key_id, stored, aad in items:
            if key_id is None:
                opened.append(stored)
                continue
            key = keys.get(key_id)
            if key is None:
                opened.append(None)
                continue
            try:
                opened.append(open_sealed(key.key, stored, aad))
            except CipherError:
                log.error("stored content under key %s does not open for its row", key_id)
                opened.append(None)
        return opened


class Sealer:
    """Seals content under subjects' live data keys, confirmed inside one key-store hold
    (``KeyHold``: a destroy of any of them waits until the write has committed)."""

    def __init__(self, store: KeyStore, hold: KeyHold):
        self._store = store
        self._hold = hold
        self._keys: dict[tuple[str, str], DataKey] = {}
        self._tenants: set[str] = set()

    def prepare(self, subjects: Iterable[tuple[str, str]]) -> None:
        """Confirm the subjects' tenants (one locked row each), then take their keys: the
        cached ones still valid, the others read (or created) after the lock."""
        todo = {subject for subject in subjects if subject not in self._keys}
        tenants = {tenant for tenant, _ in todo} - self._tenants
        self._hold.confirm(tenants)
        self._tenants |= tenants
        if todo:
            self._keys.update(self._store.keys_for(todo))

    def key(self, tenant: str, subject_id: str) -> DataKey:
        found = self._keys.get((tenant, subject_id))
        if found is None:
            self.prepare([(tenant, subject_id)])
            found = self._keys[(tenant, subject_id)]
        return found

    def seal(self, tenant: str, subject_id: str, plaintext: str, aad: bytes) -> tuple[str, str]:
        """``(key_id, sealed)`` of ``plaintext`` under the subject's key."""
        key = self.key(tenant, subject_id)
        return key.key_id, seal(key.key, plaintext, aad)


def content_digest(key: DataKey, normalized: str) -> str:
    """A keyed hash of normalized content under a key derived from the subject's data key.

    A plain sha-256 of short texts ("prefers window seats") falls to a dictionary attack on
    any copy of the table; under the data key it is shredded with the content.
    """
    return keyed_hash(keyed_hash(key.key, "memscribe/content-hash/v1").encode(), normalized)


# The vault rides on its engine as an attribute: engine and vault refer to each other and are
# collected together (a WeakKeyDictionary would not do: its value, the vault, holds the engine,
# so no engine, and no pooled connection, would ever be freed).
_VAULT = "_memscribe_vault"
# An engine nobody attached (a script's own engine on the same database) still finds the
# newest vault of its database (one per database URL).
_by_url: dict[str, Vault] = {}
_registry_lock = threading.Lock()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def attach(engine: Engine, vault: Vault) -> Vault:
    """Make ``vault`` the one store functions use on ``engine`` (and its database)."""
    with _registry_lock:
        setattr(engine, _VAULT, vault)
        _by_url[_url(engine)] = vault
    return vault


def vault_for(engine: Engine, settings: Settings) -> Vault:
    """The vault attached to ``engine``, attaching one built from ``settings`` if none is."""
    found: Vault | None = getattr(engine, _VAULT, None)
    return found if found is not None else attach(engine, Vault(settings, engine=engine))


def keyed_engine(settings: Settings) -> Engine:
    """The durable engine of ``settings`` with its vault attached: what a process's front
    door (the client, a worker's runtime, the CLI) builds, so every store function finds the
    key store."""
    engine = make_engine(settings.database_url)
    vault_for(engine, settings)
    return engine


def vault_of(engine: Engine) -> Vault | None:
    found: Vault | None = getattr(engine, _VAULT, None)
    return found or _by_url.get(_url(engine))


def open_contents(
    engine: Engine, items: Sequence[tuple[str | None, str, bytes]]
) -> list[str | None]:
    """Plaintext of stored content (see ``Vault.open_many``); plaintext rows need no vault."""
    if all(key_id is None for key_id, _, _ in items):
        return [stored for _, stored, _ in items]
    vault = vault_of(engine)
    if vault is None:
        raise PermanentError(
            "stored content is encrypted but no key store is attached to this engine "
            "(core.crypto.vault_for(engine, settings))"
        )
    return vault.open_many(items)


def sealing(engine: Engine) -> Vault | None:
    """The vault that seals new content written through ``engine``, or None (plaintext)."""
    vault = vault_of(engine)
    return vault if vault is not None and vault.encrypt else None
