"""The cipher and the key settings: sealing round-trips, binds its row, and refuses bad keys."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError as SettingsError

from config.settings import KeySettingError, Settings
from core.crypto.cipher import CipherError, message_aad, new_data_key, open_sealed, seal
from core.crypto.secrets import load_secrets, subject_ref


def test_seal_round_trips_as_text() -> None:
    """A sealed value is ASCII text that opens to the plaintext."""
    key = new_data_key()
    aad = message_aad("acme", "s1", "m1")
    sealed = seal(key, "Where is my refund? 🙂\n\ttab", aad)
    assert sealed.startswith("v1:") and sealed.isascii() and "refund" not in sealed
    assert open_sealed(key, sealed, aad) == "Where is my refund? 🙂\n\ttab"


def test_a_value_moved_to_another_row_does_not_open() -> None:
    """AAD binds the row: another message id, session or tenant fails loudly."""
    key = new_data_key()
    sealed = seal(key, "secret", message_aad("acme", "s1", "m1"))
    for aad in (message_aad("acme", "s1", "m2"), message_aad("acme", "s2", "m1")):
        with pytest.raises(CipherError):
            open_sealed(key, sealed, aad)


def test_a_wrong_key_or_a_tampered_value_does_not_open() -> None:
    """Another key, a flipped byte or plain text: CipherError, never garbage."""
    key, aad = new_data_key(), b"row"
    sealed = seal(key, "secret", aad)
    with pytest.raises(CipherError):
        open_sealed(new_data_key(), sealed, aad)
    raw = bytearray(base64.b64decode(sealed[3:]))
    raw[-1] ^= 1
    with pytest.raises(CipherError):
        open_sealed(key, "v1:" + base64.b64encode(bytes(raw)).decode(), aad)
    with pytest.raises(CipherError):
        open_sealed(key, "secret", aad)


def test_subject_ref_is_keyed() -> None:
    """subject_ref depends on the hash key and the tenant, and is 64 hex characters."""
    one = Settings(hash_key=base64.b64encode(os.urandom(32)).decode())
    two = Settings(hash_key=base64.b64encode(os.urandom(32)).decode())
    ref = subject_ref(one, "acme", "user-1")
    assert len(ref) == 64 and ref == subject_ref(one, "acme", "user-1")
    assert ref != subject_ref(two, "acme", "user-1")
    assert ref != subject_ref(one, "other", "user-1")


@pytest.mark.parametrize(
    "fields",
    [
        {"kek": "not base64!"},
        {"kek": base64.b64encode(b"short").decode()},
        {"hash_key": base64.b64encode(b"x" * 16).decode()},
        {"previous_keks": "no-colon"},
        {"kek_id": "bad id"},
    ],
)
def test_malformed_key_settings_are_refused_at_start(fields: dict[str, str]) -> None:
    """A bad KEK, hash key or previous KEK stops start-up, naming the setting only."""
    with pytest.raises((SettingsError, KeySettingError)) as raised:
        Settings(**fields)
    for name, value in fields.items():
        if name != "kek_id":  # an id is no secret; the keys must never be echoed
            assert value not in str(raised.value)


def test_development_keys_are_made_once_in_a_private_file(tmp_path: Path) -> None:
    """No KEK set: one 0600 file of random keys, the same ones on every load, kek_id "dev"."""
    path = tmp_path / "var" / "dev-secrets.json"
    first = load_secrets(Settings(dev_secrets_path=str(path)))
    assert first.development and first.kek_id == "dev" and len(first.kek) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_secrets(Settings(dev_secrets_path=str(path), kek_id="other"))  # not cached
    assert again.kek == first.kek and again.hash_key == first.hash_key
    real = load_secrets(
        Settings(dev_secrets_path=str(path), kek=base64.b64encode(os.urandom(32)).decode())
    )
    # A real KEK set later: keys wrapped by the development one stay readable until rotated.
    assert not real.development and real.kek_by_id("dev") == first.kek
