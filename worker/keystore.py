"""``memscribe keystore``: create the key store's table, re-wrap data keys after a KEK change.

``memscribe migrate`` already creates ``subject_keys`` in a separate key-store database
(``MEMSCRIBE_KEYSTORE_URL``), so one command brings every store up; ``keystore init`` does only
that part, for an operator who provisions the key store on its own.
"""

from __future__ import annotations

import argparse

from rich.console import Console

from config.settings import Settings
from core.crypto.keystore import KeyStore

console = Console()


def _where(url: str) -> str:
    return url.split("@")[-1]  # never print credentials


def ensure_keystore(settings: Settings) -> bool:
    """Create ``subject_keys`` in the key-store database when it is a separate one; True if it
    is separate (the content database gets the table from its migrations)."""
    if settings.keystore_url == settings.database_url:
        return False
    store = KeyStore.from_settings(settings)
    try:
        store.ensure_schema()
    finally:
        store.dispose()
    return True


def cmd_init(settings: Settings, _args: argparse.Namespace) -> int:
    if ensure_keystore(settings):
        console.print(f"key store ready in {_where(settings.keystore_url)}")
    else:
        console.print("the key store is the content database: `memscribe migrate` creates it")
    return 0


def cmd_rotate(settings: Settings, _args: argparse.Namespace) -> int:
    store = KeyStore.from_settings(settings)
    try:
        rotated = store.rotate_kek()
    finally:
        store.dispose()
    console.print(
        f"re-wrapped {rotated} data keys under KEK {store.secrets.kek_id!r}; "
        "no content was rewritten"
    )
    return 0


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keystore = commands.add_parser("keystore", help="data keys (docs/encryption.md)")
    actions = keystore.add_subparsers(dest="keystore_command", required=True)
    init = actions.add_parser("init", help="create subject_keys in MEMSCRIBE_KEYSTORE_URL")
    init.set_defaults(handler=cmd_init)
    rotate = actions.add_parser(
        "rotate", help="re-wrap every live data key under MEMSCRIBE_KEK (content untouched)"
    )
    rotate.set_defaults(handler=cmd_rotate)
