"""AES-256-GCM for content (``seal`` / ``open_sealed``) and for wrapping data keys.

A sealed value is text, so it fits the existing ``Text`` columns and COPY's text format:
``"v1:" + base64(nonce || ciphertext || tag)`` with a random 96-bit nonce. The associated data
(AAD) names the row (``message_aad`` and friends), so a ciphertext copied into another row, or
another session's row, fails to open instead of showing up there.
"""

from __future__ import annotations

import base64
import binascii
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import PermanentError

PREFIX = "v1:"
_NONCE_BYTES = 12
KEY_BYTES = 32


class CipherError(PermanentError):
    """A sealed value does not open: wrong key, destroyed key, other row, or tampered."""


@lru_cache(maxsize=1024)
def _aead(key: bytes) -> AESGCM:
    # Building the cipher costs as much as sealing a 500-byte message; a drained batch seals
    # many messages per key. Bounded: a destroyed key's entry ages out, and it can only ever
    # seal what a caller hands it (which key to use is decided under KeyHold).
    return AESGCM(key)


def seal(key: bytes, plaintext: str, aad: bytes) -> str:
    """``plaintext`` encrypted under ``key``, bound to ``aad``, as text."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _aead(key).encrypt(nonce, plaintext.encode(), aad)
    return PREFIX + base64.b64encode(nonce + sealed).decode()


def open_sealed(key: bytes, sealed: str, aad: bytes) -> str:
    """The plaintext of ``sealed``; ``CipherError`` if it was not sealed under ``key`` and
    ``aad``."""
    if not sealed.startswith(PREFIX):
        raise CipherError("not a sealed value (no v1: prefix)")
    try:
        raw = base64.b64decode(sealed[len(PREFIX) :], validate=True)
        opened: bytes = _aead(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], aad)
        return opened.decode()
    except (InvalidTag, binascii.Error, ValueError):
        # One message for every cause: which one it was is no business of a caller (or log).
        raise CipherError("sealed value does not open with this key for this row") from None


def wrap(kek: bytes, data_key: bytes, aad: bytes) -> bytes:
    """``data_key`` encrypted under the KEK (nonce || ciphertext), bound to its key row."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + bytes(AESGCM(kek).encrypt(nonce, data_key, aad))


def unwrap(kek: bytes, wrapped: bytes, aad: bytes) -> bytes:
    try:
        return bytes(AESGCM(kek).decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], aad))
    except InvalidTag:
        raise CipherError("wrapped data key does not open with this KEK") from None


def new_data_key() -> bytes:
    return bytes(AESGCM.generate_key(bit_length=8 * KEY_BYTES))


def message_aad(tenant: str, session_id: str, message_id: str) -> bytes:
    # Ids never contain "/" (core/models.py), so the parts cannot run into each other.
    return f"m/{tenant}/{session_id}/{message_id}".encode()


def summary_aad(tenant: str, session_id: str, covers_through_seq: int) -> bytes:
    return f"s/{tenant}/{session_id}/{covers_through_seq}".encode()


def memory_aad(tenant: str, subject_id: str, memory_id: str) -> bytes:
    return f"k/{tenant}/{subject_id}/{memory_id}".encode()
