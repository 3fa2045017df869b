"""The ``memscribe`` command line: migrate, flush, status, dlq, memories, purge, demo, worker,
beat."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from config.settings import Settings, get_settings
from core.crypto.vault import keyed_engine
from core.errors import MemscribeError
from core.log import deadletters
from core.log.backoff import Backoff
from core.log.drainer import Drainer
from core.log.status import shard_status
from core.store.connections import redis_client
from core.store.db import migrate
from core.store.keys import Keys
from core.summaries.status import summarization_status
from worker import backup, checkpoints, dlq, erasure, keystore, memories, observe, purge, run

console = Console()


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    migrate(settings.database_url)
    console.print(f"migrated {settings.database_url.split('@')[-1]} to the newest schema")
    if keystore.ensure_keystore(settings):
        console.print(f"key store ready in {settings.keystore_url.split('@')[-1]}")
    return 0


def cmd_flush(settings: Settings, args: argparse.Namespace) -> int:
    drainer = Drainer(
        redis=redis_client(settings),
        engine=keyed_engine(settings),
        settings=settings,
    )
    if not args.wait:
        report = drainer.drain_all()
        console.print(f"persisted {report.persisted} messages in {report.batches} batches")
        return 0
    left = drainer.flush(timeout_s=args.timeout)
    if left:
        console.print(f"[red]backlog still {left} entries after {args.timeout}s[/red]")
        return 1
    console.print("backlog is zero: every appended message is durable")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    client = redis_client(settings)
    keys = Keys.of(settings)
    shards = shard_status(client, keys)
    dead = deadletters.counts(client, keys)
    failing = Backoff(
        client,
        keys.backoff("store"),
        base_ms=settings.store_backoff_base_ms,
        cap_s=settings.store_backoff_cap_s,
    ).state()
    store = {"failing": failing is not None, **(asdict(failing) if failing else {})}
    summaries = summarization_status(client, keys, settings)
    totals = {
        "length": sum(s.length for s in shards),
        "pending": sum(s.pending for s in shards),
        "undelivered": sum(s.undelivered for s in shards),
        "backlog": sum(s.backlog for s in shards),
        "dead_letters": sum(s.dead_letters for s in shards),
        "oldest_pending_age_s": max(
            (s.oldest_pending_age_s for s in shards if s.oldest_pending_age_s is not None),
            default=None,
        ),
    }
    if args.json:
        rows = [{**asdict(s), "backlog": s.backlog} for s in shards]
        document = {
            "shards": rows,
            "totals": totals,
            "dead_letters": dead,
            "store": store,
            "summaries": summaries,
        }
        print(json.dumps(document, indent=2))
        return 0
    table = Table("shard", "length", "pending", "undelivered", "oldest pending (s)", "dead")
    for s in shards:
        age = "" if s.oldest_pending_age_s is None else f"{s.oldest_pending_age_s:.1f}"
        table.add_row(
            str(s.shard),
            str(s.length),
            str(s.pending),
            str(s.undelivered),
            age,
            str(s.dead_letters),
        )
    console.print(table)
    console.print(
        f"backlog {totals['backlog']}; dead letters: {dead['wal']} WAL entries, "
        f"{dead['task']} tasks (memscribe dlq list)"
    )
    if failing:
        console.print(
            f"[red]durable store failing ({failing.failures} times in a row), next attempt in "
            f"{failing.retry_in_s:.1f}s: {failing.last_error}[/red]"
        )
    _print_summaries(summaries)
    return 0


def _print_summaries(summaries: dict[str, Any]) -> None:
    pending = summaries["pending"]
    console.print(
        f"summaries: {summaries['backend']}; tokenizer {summaries['tokenizer']}; trigger "
        f"{summaries['trigger_tokens']} tokens; {pending['sessions']} pending"
        + (f" (oldest {pending['oldest_age_s']}s)" if pending["oldest_age_s"] is not None else "")
        + (
            f", {pending['older_than_timeout']} past the timeout"
            if pending["older_than_timeout"]
            else ""
        )
    )
    for tenant in summaries["deferred_by_budget"]:
        console.print(
            f"[yellow]tenant {tenant['tenant']}: daily summary budget spent "
            f"({tenant['spent_today']}/{tenant['daily_budget']} tokens), "
            f"{tenant['sessions']} sessions deferred until 00:00 UTC[/yellow]"
        )


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(
        settings, sessions=args.sessions, messages=args.messages, appenders=args.appenders
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memscribe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or upgrade the durable schema (Alembic)")
    flush = commands.add_parser("flush", help="drain the write-ahead log into the durable store")
    flush.add_argument("--wait", action="store_true", help="return only when the backlog is zero")
    flush.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most")
    status = commands.add_parser("status", help="per-shard backlog of the write-ahead log")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    demo = commands.add_parser("demo", help="run a synthetic chat workload end to end")
    demo.add_argument("--sessions", type=int, default=300)
    demo.add_argument("--messages", type=int, default=6000)
    demo.add_argument("--appenders", type=int, default=4)
    dlq.add_parser(commands)
    memories.add_parsers(commands)
    erasure.add_parsers(commands)
    purge.add_parser(commands)
    keystore.add_parsers(commands)
    backup.add_parsers(commands)
    checkpoints.add_parsers(commands)  # LangGraph checkpoints (core/checkpoints)
    run.add_parsers(commands)
    observe.add_parsers(commands)  # metrics (core/observability)
    # Flower (worker/flower.py): basic auth required, loopback unless configured.
    from worker import flower

    flower.add_parser(commands)
    return parser


HANDLERS = {"migrate": cmd_migrate, "flush": cmd_flush, "status": cmd_status, "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handler = getattr(args, "handler", None) or HANDLERS[args.command]
    try:
        return int(handler(get_settings(), args))
    except MemscribeError as exc:
        console.print(f"[red]memscribe: {exc}[/red]")
        return 2


if __name__ == "__main__":
    sys.exit(main())
