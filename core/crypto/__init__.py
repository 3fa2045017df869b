"""Crypto-shredding (docs/encryption.md): per-subject data keys wrapped by a key-encryption
key, AES-256-GCM for content, and the seal/open helpers the stores use.

May import only ``core.store``, ``core.models``, ``core.errors`` and ``config``.
"""

from core.crypto.cipher import CipherError, open_sealed, seal
from core.crypto.keystore import DataKey, KeyStore
from core.crypto.secrets import subject_ref
from core.crypto.vault import (
    Sealer,
    Vault,
    keyed_engine,
    open_contents,
    sealing,
    vault_for,
    vault_of,
)

__all__ = [
    "CipherError",
    "DataKey",
    "KeyStore",
    "Sealer",
    "Vault",
    "keyed_engine",
    "open_contents",
    "open_sealed",
    "seal",
    "sealing",
    "subject_ref",
    "vault_for",
    "vault_of",
]
