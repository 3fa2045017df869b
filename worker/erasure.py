"""``memscribe erase | erasure | export``: erasure and export from the command line.

``erase`` does the whole erasure in this process (the request's barrier, then the work the
``maintenance.erase`` task would do), so it needs no worker, and prints the receipt.
``erasure verify`` exits 1 when any store still holds data of the subject from before its
erasure, 2 when the subject has no erasure on record.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from rich.console import Console

from config.settings import Settings
from core.client import MemoryClient
from core.erasure.job import ErasureJob
from core.erasure.receipts import Receipt
from core.erasure.verify import verify_subject

console = Console()


def _print_receipt(receipt: Receipt, as_json: bool) -> None:
    if as_json:
        print(json.dumps(receipt.as_dict(), indent=2))
        return
    removed = receipt.counts.get("removed", {})
    shown = ", ".join(f"{name} {count}" for name, count in sorted(removed.items()) if count)
    console.print(
        f"erasure {receipt.receipt_id}: {receipt.status} ({receipt.scope} of tenant "
        f"{receipt.tenant}); removed: {shown or 'nothing'}; keys destroyed "
        f"{len(receipt.key_ids)}; Redis AOF: {receipt.counts.get('aof', 'not yet')}"
    )


def _client(settings: Settings) -> MemoryClient:
    client = MemoryClient.from_settings(settings)
    client._enqueue = lambda _name, _args: None  # the job runs here, not in a worker
    return client


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    client = _client(settings)
    request_id = args.request_id or f"cli-{secrets.token_hex(8)}"
    with console.status("erasing", spinner="dots"):
        if args.scope == "subject":
            receipt = client.erase_subject(args.target, tenant=args.tenant, request_id=request_id)
        else:
            receipt = client.erase_tenant(args.target, request_id=request_id)
        job = ErasureJob(redis=client.redis, engine=client.engine, settings=settings)
        receipt = job.run(receipt.receipt_id)
    _print_receipt(receipt, args.json)
    return 0 if receipt.status == "completed" else 1


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    receipt = _client(settings).erasure_status(args.receipt_id)
    _print_receipt(receipt, args.json)
    return 1 if receipt.status == "failed" else 0


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    client = _client(settings)
    found = verify_subject(
        redis_client=client.redis,
        engine=client.engine,
        settings=settings,
        tenant=args.tenant,
        subject_id=args.subject,
        key_alive=client._key_alive,
    )
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
    elif found.clean:
        console.print(f"clean: no residue in any store ({len(found.receipts)} erasures checked)")
    else:
        left = ", ".join(f"{store} {n}" for store, n in sorted(found.residue.items()) if n)
        console.print(f"[red]residue: {left}[/red]")
    return 0 if found.clean else 1


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    client = _client(settings)
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        for piece in client.export_subject(args.subject, tenant=args.tenant):
            out.write(piece)
        out.write("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    erase = commands.add_parser("erase", help="erase a data subject or a whole tenant (GDPR)")
    scopes = erase.add_subparsers(dest="scope", required=True)
    for scope, target in (("subject", "SUBJECT"), ("tenant", "TENANT")):
        parser = scopes.add_parser(scope, help=f"erase one {scope}, in this process")
        parser.add_argument("target", metavar=target)
        if scope == "subject":
            parser.add_argument("--tenant", default="default")
        parser.add_argument("--request-id", help="idempotency key (a replay returns the receipt)")
        parser.add_argument("--json", action="store_true", help="the receipt as JSON")
        parser.set_defaults(handler=cmd_erase)
    erasure = commands.add_parser("erasure", help="erasure receipts and verification")
    verbs = erasure.add_subparsers(dest="verb", required=True)
    status = verbs.add_parser("status", help="an erasure's receipt")
    status.add_argument("receipt_id", metavar="RECEIPT")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)
    verify = verbs.add_parser("verify", help="search every store for the subject's residue")
    verify.add_argument("subject", metavar="SUBJECT")
    verify.add_argument("--tenant", default="default")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(handler=cmd_verify)
    export = commands.add_parser("export", help="export what is held about a subject (JSON)")
    kinds = export.add_subparsers(dest="kind", required=True)
    subject = kinds.add_parser("subject", help="every record of one subject as one document")
    subject.add_argument("subject", metavar="SUBJECT")
    subject.add_argument("--tenant", default="default")
    subject.add_argument("--output", help="a file (default: standard output)")
    subject.set_defaults(handler=cmd_export)
