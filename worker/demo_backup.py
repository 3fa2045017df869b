"""The demo's backup: a full backup of everything the demo wrote (to ``MEMSCRIBE_BACKUP_URL``,
``./var/backups`` by default), verified, then restored into a scratch SQLite database; the
demo checks that the restore rebuilt exactly the rows the manifest counts."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from config.settings import Settings
from core.backups import LiveKeys, Restorer, run_backup, verify
from core.backups.target import target_from_settings
from core.client import MemoryClient
from core.crypto.keystore import KeyStore


def run(client: MemoryClient, console: Console, settings: Settings) -> bool:
    """True when the backup verifies and its restore has every row of its snapshot."""
    report = run_backup(redis=client.redis, engine=client.engine, settings=settings, kind="full")
    if not report.ran:
        console.print(f"[red]backup did not run: {report.reason}[/red]")
        return False
    backup = report.backup
    target = target_from_settings(settings)
    keystore = KeyStore.from_settings(settings)
    try:
        [verified] = verify(target, keystore.secrets, backup["id"])
        with tempfile.TemporaryDirectory(prefix="memscribe-restore-") as scratch:
            into = f"sqlite:///{Path(scratch) / 'restored.db'}"
            restored = Restorer(target=target, secrets=keystore.secrets, keys=LiveKeys(keystore))
            result = restored.run(backup["id"], into=into)
    finally:
        keystore.dispose()
    skipped = sum(result.erased.values()) + sum(result.expired.values())
    table = Table(title="backup and restore drill")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("backup", f"{backup['id']} ({backup['kind']})")
    table.add_row("rows in the snapshot", str(backup["total_rows"]))
    table.add_row("bytes written (compressed, encrypted)", str(backup["bytes"]))
    table.add_row("verify", "ok" if verified.ok else "; ".join(verified.problems))
    table.add_row("rows restored / skipped", f"{result.rows} / {skipped}")
    table.add_row("backup / restore seconds", f"{report.duration_s:.2f} / {result.duration_s:.2f}")
    console.print(table)
    return verified.ok and result.rows + skipped == backup["total_rows"]
