"""``memscribe memories``: consolidate a subject's memories now, or undo a merge.

``consolidate`` does the work in this process (the ``llm.consolidate`` beat task does the same
through the workers), with a progress bar, and prints what it did.
"""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.progress import Progress

from config.settings import Settings
from core.crypto.vault import keyed_engine
from core.memories.consolidate import Consolidator
from core.memories.report import ConsolidationReport
from core.memories.unconsolidate import unconsolidate
from core.store.connections import redis_client

console = Console()


def _summary(report: ConsolidationReport) -> str:
    refused = ", ".join(f"{reason} {count}" for reason, count in sorted(report.refused.items()))
    skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(report.skipped.items()))
    return (
        f"subjects {report.subjects}, clusters {report.clusters}, merged {report.merged} "
        f"({report.exact} exact, {report.superseded} memories superseded), "
        f"refused {sum(report.refused.values())}"
        + (f" ({refused})" if refused else "")
        + f", skipped {sum(report.skipped.values())}"
        + (f" ({skipped})" if skipped else "")
        + f"; LLM calls {report.llm_calls}, tokens {report.tokens} "
        f"(prompt {report.prompt_tokens}, completion {report.completion_tokens})"
    )


def cmd_consolidate(settings: Settings, args: argparse.Namespace) -> int:
    consolidator = Consolidator(
        redis=redis_client(settings), engine=keyed_engine(settings), settings=settings
    )
    with Progress(console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task("consolidating", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        report = consolidator.consolidate_due(
            tenant=args.tenant, subject_id=args.subject, limit=args.limit, on_subject=advance
        )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        console.print(
            f"consolidation with {consolidator.merger.method}: {_summary(report)}", soft_wrap=True
        )
    failed = report.skipped.get("failed", 0) + report.skipped.get("unavailable", 0)
    return 1 if failed else 0


def cmd_unconsolidate(settings: Settings, args: argparse.Namespace) -> int:
    undone = unconsolidate(
        redis_client(settings),
        keyed_engine(settings),
        settings,
        args.memory_id,
        tenant=args.tenant,
    )
    console.print(
        f"unconsolidated {undone.memory_id}: {len(undone.restored)} memories of "
        f"{undone.tenant}/{undone.subject_id} are live again"
    )
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    memories = commands.add_parser("memories", help="long-term memories: consolidate, undo")
    verbs = memories.add_subparsers(dest="verb", required=True)
    consolidate = verbs.add_parser(
        "consolidate", help="merge duplicate memories now (in this process) and print a summary"
    )
    consolidate.add_argument("--subject", help="only this subject")
    consolidate.add_argument("--tenant", help="only this tenant")
    consolidate.add_argument("--limit", type=int, default=100_000, help="subjects at most")
    consolidate.add_argument("--json", action="store_true", help="the counts as JSON")
    consolidate.set_defaults(handler=cmd_consolidate)
    undo = verbs.add_parser("unconsolidate", help="undo a merge: its sources come back")
    undo.add_argument("memory_id")
    undo.add_argument("--tenant")
    undo.set_defaults(handler=cmd_unconsolidate)
