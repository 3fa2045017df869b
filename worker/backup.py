"""``memscribe backup run | list | verify | restore | prune | export-keys``, in this process.

No worker is needed: each command does the work itself, with a progress bar on the long ones
and a one-line summary at the end. Exit status: 0 done, 1 the work failed (a backup that does
not verify, a skipped run with ``--require``), 2 an error (bad input, a target or store that
fails; the message says which).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from config.settings import Settings
from core.backups import (
    ExportedKeys,
    LiveKeys,
    Restorer,
    export_keys,
    list_exports,
    load_catalog,
    run_backup,
    run_prune,
    verify,
)
from core.backups.target import target_from_settings
from core.crypto.keystore import KeyStore
from core.crypto.secrets import load_secrets
from core.store.connections import redis_client
from core.store.db import make_engine

console = Console()


@contextmanager
def _table_progress(enabled: bool) -> Iterator[Callable[[str, int], None]]:
    """A progress bar per table: rows read (backup) or restored (restore)."""
    with Progress(console=console, transient=True, disable=not enabled) as progress:
        tasks: dict[str, TaskID] = {}

        def update(table: str, done: int) -> None:
            if table not in tasks:
                tasks[table] = progress.add_task(table, total=None)
            progress.update(tasks[table], completed=done)

        yield update


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    kind = "full" if args.full else "incremental" if args.incremental else "auto"
    try:
        with _table_progress(not args.json) as progress:
            report = run_backup(
                redis=redis_client(settings),
                engine=engine,
                settings=settings,
                kind=kind,
                progress=progress,
            )
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(report.summary(), soft_wrap=True)
    return 0 if report.ran or not args.require else 1


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(target_from_settings(settings))
    listed = [manifest.summary() for manifest in catalog.newest_first()]
    if args.json:
        print(json.dumps(listed, indent=2))
        return 0
    table = Table("id", "kind", "parent", "created at", "rows", "bytes")
    for item in listed:
        table.add_row(
            item["id"],
            item["kind"],
            item["parent"] or "",
            item["created_at"],
            str(item["rows"]),
            str(item["bytes"]),
        )
    console.print(table)
    orphans = len(catalog.orphans())
    console.print(
        f"{len(listed)} backups"
        + (f"; {orphans} runs without a valid manifest (prune removes them)" if orphans else "")
    )
    return 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    target = target_from_settings(settings)
    catalog = load_catalog(target)
    total = sum(
        entry.size
        for manifest in (
            catalog.chain(args.backup_id) if args.backup_id else catalog.manifests.values()
        )
        for entry in manifest.objects
    )
    with Progress(console=console, transient=True, disable=args.json) as progress:
        bar = progress.add_task("verifying", total=total)
        results = verify(
            target,
            load_secrets(settings),
            args.backup_id,
            catalog=catalog,
            progress=lambda size: progress.advance(bar, size),
        )
    failed = [result for result in results if not result.ok]
    if args.json:
        print(json.dumps([result.as_dict() for result in results], indent=2))
    else:
        for result in failed:
            for problem in result.problems:
                console.print(f"[red]{result.backup_id}: {problem}[/red]", soft_wrap=True)
        console.print(
            f"verified {len(results)} backups: {len(results) - len(failed)} ok, "
            f"{len(failed)} failed"
        )
    return 1 if failed or not results else 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    target = target_from_settings(settings)
    secrets = load_secrets(settings)
    keystore = None
    if args.keys_from_export:
        keys: LiveKeys | ExportedKeys = ExportedKeys(target, secrets, args.keys_from_export)
    else:
        keystore = KeyStore.from_settings(settings)
        keys = LiveKeys(keystore)
    try:
        with _table_progress(not args.json) as progress:
            report = Restorer(target=target, secrets=secrets, keys=keys, progress=progress).run(
                args.backup_id, into=args.into
            )
    finally:
        if keystore is not None:
            keystore.dispose()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(report.summary(), soft_wrap=True)
    return 0


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    report = run_prune(redis=redis_client(settings), settings=settings)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(report.summary(), soft_wrap=True)
    return 0


def cmd_export_keys(settings: Settings, args: argparse.Namespace) -> int:
    target = target_from_settings(settings)
    if args.list:
        exports = [
            {"id": body["id"], "created_at": body["created_at"], "rows": body["rows"]}
            for body in list_exports(target)
        ]
        print(json.dumps(exports, indent=2))
        return 0
    keystore = KeyStore.from_settings(settings)
    try:
        body = export_keys(target, keystore)
    finally:
        keystore.dispose()
    console.print(f"key-store export {body['id']}: {body['rows']} data keys, wrapped by the KEK")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    backup = commands.add_parser("backup", help="backups: run, list, verify, restore, prune")
    verbs = backup.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="take a backup now (full or incremental, as due)")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--full", action="store_true", help="a full backup, whatever is due")
    which.add_argument("--incremental", action="store_true", help="incremental on the newest")
    run.add_argument("--require", action="store_true", help="exit 1 if another run held it")
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=cmd_run)
    listing = verbs.add_parser("list", help="backups with a valid manifest, newest first")
    listing.add_argument("--json", action="store_true", help="a JSON array")
    listing.set_defaults(handler=cmd_list)
    check = verbs.add_parser("verify", help="read every object back against its manifest")
    check.add_argument("backup_id", nargs="?", help="one backup and its chain (default: all)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_verify)
    restore = verbs.add_parser("restore", help="restore a backup into an empty database")
    restore.add_argument("backup_id")
    restore.add_argument("--into", required=True, metavar="DATABASE_URL")
    restore.add_argument(
        "--keys-from-export",
        metavar="EXPORT_ID",
        help="take data keys from a key-store export (the key store was lost too)",
    )
    restore.add_argument("--json", action="store_true")
    restore.set_defaults(handler=cmd_restore)
    prune = verbs.add_parser("prune", help="keep the newest full backups, remove the rest")
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(handler=cmd_prune)
    keys = verbs.add_parser("export-keys", help="write a key-store export (or --list them)")
    keys.add_argument("--list", action="store_true", help="list the exports as JSON")
    keys.set_defaults(handler=cmd_export_keys)
