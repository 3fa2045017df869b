"""``python -m bench``: run the sections, print the Markdown table, write the JSON."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from bench import machine
from bench.config import PRESETS, Stores
from bench.context import ROOT, BenchContext, log
from bench.report import Report, SectionResult, markdown
from bench.sections import SECTIONS
from bench.stores import BenchError

DEFAULT_OUTPUT = ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="memscribe against its anchors, side by side in one run (real Redis and "
        "PostgreSQL; stores from MEMSCRIBE_BENCH_REDIS_URL and MEMSCRIBE_BENCH_DATABASE_URL).",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a smaller run, under two minutes")
    size.add_argument("--tiny", action="store_true", help="seconds; for testing the harness")
    parser.add_argument(
        "--sections", help="comma-separated keys: " + ", ".join(s.key for s in SECTIONS)
    )
    parser.add_argument("--repetitions", type=int, help="repetitions per figure")
    parser.add_argument("--lag-rate", type=float, help="appends per second in the lag section")
    parser.add_argument("--lag-seconds", type=float, help="duration of each lag repetition")
    parser.add_argument("--lag-appenders", type=int, help="appender processes in the lag section")
    parser.add_argument(
        "--no-aof-always", action="store_true", help="skip the appendfsync-always row"
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        help="MEMSCRIBE_BENCH_REDIS_URL names a Redis Cluster node (brokers must be set)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mode = "tiny" if args.tiny else "quick" if args.quick else "full"
    config = PRESETS[mode].with_overrides(
        repetitions=args.repetitions,
        lag_rate=args.lag_rate,
        lag_seconds=args.lag_seconds,
        lag_appenders=args.lag_appenders,
        aof_always=False if args.no_aof_always else None,
    )
    chosen = SECTIONS
    if args.sections:
        wanted = args.sections.split(",")
        unknown = set(wanted) - {section.key for section in SECTIONS}
        if unknown:
            print(f"unknown sections: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        chosen = [section for section in SECTIONS if section.key in wanted]
    try:
        stores = Stores.from_env(redis_cluster=True if args.redis_cluster else None)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    ctx = BenchContext(config=config, stores=stores, log_dir=ROOT / "var" / "bench")
    ctx.log_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        ctx.prepare()
        report = Report(
            mode=mode,
            command="make bench" + (" QUICK=1" if mode == "quick" else "")
            if mode != "tiny"
            else "python -m bench --tiny",
            started_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            machine=machine.describe(ctx.redis, ctx.engine),
            config=asdict(config),
            settings={
                name: getattr(ctx.settings, name)
                for name in (
                    "shards",
                    "batch_size",
                    "flush_interval_s",
                    "flush_budget_s",
                    "buffer_max_messages",
                    "tokenizer",
                    "model",
                )
            },
        )
        log(f"{mode} run; stores {stores.redis_url} and {stores.database_url.split('@')[-1]}")
        for section in chosen:
            log(f"section {section.key}: {section.title}")
            section_began = time.monotonic()
            figures = section.run(ctx)
            report.sections.append(
                SectionResult(section, figures, time.monotonic() - section_began)
            )
        report.seconds = time.monotonic() - began
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        ctx.close()
    report.write_json(args.output)
    sys.stdout.write(markdown(report))
    log(f"wrote {os.path.relpath(args.output)} in {report.seconds:.0f} s")
    return 0
