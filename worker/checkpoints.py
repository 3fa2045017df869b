"""``memscribe checkpoints``: look at a LangGraph thread's checkpoints, delete or copy a thread.

Works without the langgraph extra: it reads the stored records (ids, namespaces, parents,
metadata, how many blobs and pending writes), never the serialized values themselves.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from config.settings import Settings
from core.checkpoints import threads
from core.checkpoints.model import Loaded
from core.checkpoints.store import CheckpointStore
from core.crypto.vault import keyed_engine
from core.store.connections import redis_client

console = Console()


def _store(settings: Settings) -> CheckpointStore:
    engine = keyed_engine(settings)
    return CheckpointStore(redis=redis_client(settings), settings=settings, engine=lambda: engine)


def _row(found: Loaded) -> dict[str, Any]:
    record = found.record
    return {
        "checkpoint_id": record.checkpoint_id,
        "checkpoint_ns": record.ns,
        "parent_checkpoint_id": record.parent_id,
        "step": record.metadata.get("step"),
        "source": record.metadata.get("source"),
        "run_id": record.metadata.get("run_id"),
        "channels": len(found.values),
        "pending_writes": len(found.writes),
    }


def cmd_list(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    keys = store.thread_keys(args.tenant, args.thread_id)
    rows = [_row(found) for found in store.list(keys, args.ns, limit=args.limit)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"checkpoints of {args.tenant}/{args.thread_id}, newest first")
    for column in ("checkpoint_id", "ns", "parent", "step", "source", "writes"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["checkpoint_id"],
            row["checkpoint_ns"] or "(root)",
            row["parent_checkpoint_id"] or "-",
            str(row["step"]),
            str(row["source"]),
            str(row["pending_writes"]),
        )
    console.print(table)
    return 0


def cmd_delete(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    floor = store.delete_thread(store.thread_keys(args.tenant, args.thread_id))
    console.print(
        f"deleted thread {args.tenant}/{args.thread_id}: hidden now (floor {floor} µs); "
        "the purge deletes its stored rows"
    )
    return 0


def cmd_copy(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    source = store.thread_keys(args.tenant, args.source)
    target = store.thread_keys(args.tenant, args.target)
    copied = threads.copy_thread(store, source, target)
    console.print(f"copied {copied} checkpoints of {args.source} to {args.target}")
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    checkpoints = commands.add_parser(
        "checkpoints", help="LangGraph checkpoints: list a thread's, delete or copy a thread"
    )
    verbs = checkpoints.add_subparsers(dest="verb", required=True)
    listing = verbs.add_parser("list", help="a thread's checkpoints, newest first")
    listing.add_argument("thread_id")
    listing.add_argument("--tenant", default="default")
    listing.add_argument("--ns", default=None, help="only this namespace ('' is the root)")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_list)
    remove = verbs.add_parser("delete", help="delete a thread (hidden at once, purged later)")
    remove.add_argument("thread_id")
    remove.add_argument("--tenant", default="default")
    remove.set_defaults(handler=cmd_delete)
    copy = verbs.add_parser("copy", help="copy every checkpoint of a thread to another")
    copy.add_argument("source")
    copy.add_argument("target")
    copy.add_argument("--tenant", default="default")
    copy.set_defaults(handler=cmd_copy)
