"""``memscribe dlq``: list, replay and drop dead letters.

WAL dead letters are moved back into their shard's WAL (atomically; persisting is idempotent
on message_id). Task dead letters are re-enqueued by name with their id-only arguments.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import UTC, datetime

import redis
from rich.console import Console
from rich.table import Table

from config.settings import Settings
from core.log import deadletters
from core.store.connections import redis_client
from core.store.keys import Keys
from core.store.scripts import Scripts

console = Console()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") if ms else ""


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    client = redis_client(settings)
    letters = deadletters.list_dead_letters(client, Keys.of(settings))
    if args.json:
        print(json.dumps([asdict(letter) for letter in letters], indent=2))
        return 0
    table = Table("id", "what", "attempts", "first failed", "last failed", "error")
    for letter in letters:
        what = (
            f"{letter.detail.get('tenant')}/{letter.detail.get('session_id')} "
            f"seq {letter.detail.get('seq')}"
            if letter.kind == "wal"
            else f"{letter.detail.get('task')}{tuple(letter.detail.get('args', []))}"
        )
        table.add_row(
            letter.id,
            what,
            str(letter.attempts),
            _when(letter.first_failed_ms),
            _when(letter.last_failed_ms),
            letter.error[:80],
        )
    console.print(table)
    console.print(f"{len(letters)} dead letters")
    return 0


def _replay_one(settings: Settings, client: redis.Redis, dead_id: str) -> bool:
    keys = Keys.of(settings)
    kind, _, _ = deadletters.parse_id(dead_id, keys)
    if kind == "wal":
        return deadletters.replay_wal(client, keys, Scripts.register(client), dead_id)
    letter = deadletters.get_task(client, keys, dead_id)
    if letter is None:
        return False
    from worker.app import app  # only task replays need the Celery app

    name = str(letter.detail["task"])
    app.send_task(
        name,
        args=letter.detail["args"],
        kwargs=letter.detail["kwargs"],
        queue=name.split(".", 1)[0],
    )
    # Enqueued first, dropped second: a crash in between replays twice, and tasks are
    # idempotent; the other order could lose the task.
    deadletters.drop(client, keys, dead_id)
    return True


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    client = redis_client(settings)
    keys = Keys.of(settings)
    ids = (
        [letter.id for letter in deadletters.list_dead_letters(client, keys, limit=100_000)]
        if args.all
        else [args.id]
    )
    if not args.all and args.id is None:
        console.print("[red]give a dead-letter id, or --all[/red]")
        return 2
    replayed = sum(_replay_one(settings, client, dead_id) for dead_id in ids)
    console.print(f"replayed {replayed} of {len(ids)} dead letters")
    return 0 if replayed == len(ids) else 1


def cmd_drop(settings: Settings, args: argparse.Namespace) -> int:
    client = redis_client(settings)
    if deadletters.drop(client, Keys.of(settings), args.id):
        console.print(f"dropped {args.id}")
        return 0
    console.print(f"[yellow]no dead letter {args.id}[/yellow]")
    return 1


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = commands.add_parser("dlq", help="dead letters: list, replay, drop")
    verbs = dlq.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="every dead letter (ids, errors, counts; no content)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    replay = verbs.add_parser("replay", help="put dead letters back (WAL) or re-enqueue (tasks)")
    replay.add_argument("id", nargs="?", help="wal:<shard>:<entry-id> or task:<entry-id>")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.set_defaults(handler=cmd_replay)
    drop = verbs.add_parser("drop", help="delete a dead letter for good")
    drop.add_argument("id")
    drop.set_defaults(handler=cmd_drop)
