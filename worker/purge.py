"""``memscribe purge``: one retention purge run in this process, and what it removed."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from config.settings import Settings
from core.retention.purge import purge_expired
from core.store.connections import redis_client
from core.store.db import make_engine

console = Console()


def cmd_purge(settings: Settings, args: argparse.Namespace) -> int:
    engine = make_engine(settings.database_url)
    try:
        report = purge_expired(redis=redis_client(settings), engine=engine, settings=settings)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        if report.ran:
            table = Table("kind", "rows purged")
            for kind, count in report.counts.items():
                table.add_row(kind, str(count))
            for kind, count in report.redis.items():
                table.add_row(f"redis {kind.replace('_', ' ')}", str(count))
            console.print(table)
        console.print(report.summary(), soft_wrap=True)
    # A skipped run is not a failure (the other run does the work); a lost lease is.
    return 1 if report.lease_lost else 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    purge = commands.add_parser(
        "purge", help="delete what retention says is due, now (one run in this process)"
    )
    purge.add_argument("--json", action="store_true", help="the counts as JSON")
    purge.set_defaults(handler=cmd_purge)
