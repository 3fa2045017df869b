"""The secrets of the key hierarchy: the key-encryption keys (KEKs) and the hash key.

They come from settings (``MEMSCRIBE_KEK``, ``MEMSCRIBE_PREVIOUS_KEKS``, ``MEMSCRIBE_HASH_KEY``).
When a setting is empty, a development value is generated once into ``dev_secrets_path``
(mode 0600) and a warning is logged every time a process loads it, so a deployment that forgot
its KEK says so instead of silently running on a key that sits next to the data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets as random
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from config.settings import Settings, decode_key, previous_keks
from core.errors import PermanentError

log = logging.getLogger(__name__)
# The development KEK's id: rows wrapped by it are recognizable once a real KEK is set.
DEV_KEK_ID = "dev"


@dataclass(frozen=True, slots=True)
class KeySecrets:
    """The active KEK, the ones being rotated out, and the hash key (never in a repr)."""

    kek_id: str
    kek: bytes = field(repr=False)
    previous: dict[str, bytes] = field(repr=False)
    hash_key: bytes = field(repr=False)
    development: bool = False

    def kek_by_id(self, kek_id: str) -> bytes:
        if kek_id == self.kek_id:
            return self.kek
        found = self.previous.get(kek_id)
        if found is None:
            raise PermanentError(
                f"data key wrapped by KEK {kek_id!r}, which is neither MEMSCRIBE_KEK_ID nor "
                "in MEMSCRIBE_PREVIOUS_KEKS"
            )
        return found


def load_secrets(settings: Settings) -> KeySecrets:
    """The KEKs and hash key of ``settings`` (development values for the empty ones)."""
    return _load(
        settings.kek.get_secret_value(),
        settings.kek_id,
        settings.previous_keks.get_secret_value(),
        settings.hash_key.get_secret_value(),
        settings.dev_secrets_path,
    )


@lru_cache(maxsize=8)
def _load(
    kek_text: str, kek_id_setting: str, previous_text: str, hash_text: str, dev_path: str
) -> KeySecrets:
    # Cached: subject_ref is called per request, and the warning below once per process.
    dev: dict[str, str] = {}
    if not kek_text or not hash_text:
        dev = _development_secrets(Path(dev_path))
    previous = previous_keks(previous_text)
    if kek_text:
        kek_id, kek = kek_id_setting, decode_key(kek_text, "kek", exact_bytes=32)
    else:
        log.warning(
            "MEMSCRIBE_KEK is not set: data keys are wrapped by the development KEK in %s. "
            "Set MEMSCRIBE_KEK (and MEMSCRIBE_KEK_ID) in production (docs/encryption.md).",
            dev_path,
        )
        kek_id, kek = DEV_KEK_ID, decode_key(dev["kek"], "dev kek", exact_bytes=32)
    if kek_text and dev:
        # A real KEK was set after running on the development one: keep the old keys usable
        # until `memscribe keystore rotate` re-wraps them.
        previous.setdefault(DEV_KEK_ID, decode_key(dev["kek"], "dev kek", exact_bytes=32))
    hash_key = decode_key(hash_text or dev["hash_key"], "hash_key", min_bytes=32)
    return KeySecrets(kek_id, kek, previous, hash_key, development=not kek_text)


def _development_secrets(path: Path) -> dict[str, str]:
    """Read the development secrets file, creating it (0600) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {
            "kek": base64.b64encode(random.token_bytes(32)).decode(),
            "hash_key": base64.b64encode(random.token_bytes(32)).decode(),
        }
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{random.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(values, handle)
        try:
            # link() fails if another process won the race: everyone then reads its file, so
            # two processes never wrap keys under two different development KEKs.
            os.link(temporary, path)
            log.warning("generated development encryption keys in %s (mode 0600)", path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict) or not {"kek", "hash_key"} <= set(loaded):
        raise PermanentError(f"{path} is not a memscribe development secrets file")
    return {"kek": str(loaded["kek"]), "hash_key": str(loaded["hash_key"])}


def keyed_hash(hash_key: bytes, message: str) -> str:
    """HMAC-SHA256 of ``message`` under ``hash_key``, as 64 hex characters."""
    return hmac.new(hash_key, message.encode(), hashlib.sha256).hexdigest()


def subject_ref(settings: Settings, tenant: str, subject_id: str) -> str:
    """The subject as the key store and erasure receipts know it: HMAC-SHA256 of
    ``"tenant/subject_id"`` under the hash key. Not reversible without the hash key, and not
    guessable from a list of likely subject ids without it."""
    return keyed_hash(load_secrets(settings).hash_key, f"{tenant}/{subject_id}")
