"""``memscribe worker`` and ``memscribe beat``: Celery under a supervisor that brings it back.

memscribe worker persist          (its pool, queues and time limits from the settings)
memscribe worker llm --autoscale 8,1 -n llm   (options override the settings)
memscribe beat
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from config.celery import FAMILIES, QUEUES
from config.settings import Settings
from core.client import redis_from_url
from worker import families, processes
from worker.supervisor import beat_check, supervise, worker_check

LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _families(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(FAMILIES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a comma-separated list of {', '.join(FAMILIES)}"
        )
    return names


def _queues(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(QUEUES))
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown queue(s) {unknown or [value]}; known: {', '.join(QUEUES)}"
        )
    return names


def _autoscale(value: str) -> tuple[int, int]:
    try:
        high, low = (int(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not MAX,MIN (two whole numbers)") from None
    if not high >= low >= 1:
        raise argparse.ArgumentTypeError(f"needs MAX >= MIN >= 1, got {value!r}")
    return high, low


def _positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number >= 1")
    return int(value)


def _stop_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not seconds > 0")
    return seconds


def add_parsers(commands: Any) -> None:
    worker = commands.add_parser(
        "worker",
        help="a supervised Celery worker: restarted when it exits or stops draining",
    )
    picked = worker.add_mutually_exclusive_group()
    # Workers per family (worker/families.py): the family's queues, pool and time limits.
    picked.add_argument(
        "family",
        nargs="?",
        choices=FAMILIES,
        help="the family to run, with its pool from the settings (default: persist)",
    )
    picked.add_argument(
        "--families",
        type=_families,
        help=f"task families to consume, with their retry queues ({', '.join(FAMILIES)})",
    )
    picked.add_argument("-Q", "--queues", type=_queues, help="exact queues to consume")
    pool = worker.add_mutually_exclusive_group()
    pool.add_argument(
        "-c",
        "--concurrency",
        type=_positive_int,
        help="prefork processes (default: the family's setting)",
    )
    pool.add_argument(
        "--autoscale", type=_autoscale, metavar="MAX,MIN", help="grow to MAX processes, down to MIN"
    )
    worker.add_argument("-n", "--name", help="node name (default: the first family), @host added")
    worker.add_argument("-l", "--loglevel", type=str.upper, choices=LOGLEVELS, default="INFO")
    _supervision_options(worker, stop_timeout_s=60)
    worker.set_defaults(handler=cmd_worker)

    beat = commands.add_parser(
        "beat",
        help="a supervised Celery beat (run several: one sends, the others stand by): "
        "restarted when it stops ticking",
    )
    beat.add_argument("-l", "--loglevel", type=str.upper, choices=LOGLEVELS, default="INFO")
    _supervision_options(beat, stop_timeout_s=30)
    beat.set_defaults(handler=cmd_beat)
    add_health_parser(commands)


def add_health_parser(commands: Any) -> None:
    health = commands.add_parser(
        "health",
        help="exit 1 if the pipeline is stalled (a container healthcheck or liveness probe)",
    )
    health.add_argument(
        "role",
        nargs="?",
        choices=("persist-worker", "beat"),
        help="persist-worker: no flush completed in the stall window while a backlog waits "
        "and beat ticks; beat: no flush tick sent in the stall window; none: Redis, broker, "
        "store and WAL lag (worker/observe.py)",
    )
    # Observability (core/observability): `memscribe health [--json]` with no role.
    health.add_argument("--json", action="store_true", help="with no role: the report as JSON")
    health.set_defaults(handler=cmd_health)


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    """The supervisor's own check, once: 0 healthy (or Redis unreachable: say so), 1 stalled."""
    if args.role is None:
        from worker.observe import cmd_health_all

        return cmd_health_all(settings, args)
    client = redis_from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        check = worker_check if args.role == "persist-worker" else beat_check
        verdict = check(settings, client)()
    finally:
        client.close()
    print({True: "ok", None: "unknown (see the warning)", False: "stalled"}[verdict])
    return 1 if verdict is False else 0


def _supervision_options(parser: argparse.ArgumentParser, *, stop_timeout_s: float) -> None:
    parser.add_argument(
        "--stop-timeout",
        type=_stop_timeout,
        default=stop_timeout_s,
        help="seconds a warm shutdown may take before the process group is killed",
    )
    parser.add_argument(
        "--no-progress-check",
        action="store_true",
        help="restart only when the process exits (not when it stops making progress)",
    )


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    worker = families.plan_from_args(settings, args)
    command = worker.command(loglevel=args.loglevel)
    # Only a worker that drains the WAL can be judged by completed flushes.
    role = (
        "persist-worker" if "persist" in worker.queues and not args.no_progress_check else "worker"
    )
    return _run(command, settings=settings, name=f"worker {worker.name}", role=role, args=args)


def cmd_beat(settings: Settings, args: argparse.Namespace) -> int:
    command = processes.beat_command(loglevel=args.loglevel)
    role = "none" if args.no_progress_check else "beat"
    return _run(command, settings=settings, name="beat", role=role, args=args)


def _run(
    command: list[str], *, settings: Settings, name: str, role: str, args: argparse.Namespace
) -> int:
    # Timestamped, like Celery's own lines, so a restart can be matched with what caused it.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/supervisor] %(message)s"))
    logger = logging.getLogger("memscribe.supervisor")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return supervise(
        command, settings=settings, name=name, role=role, stop_timeout_s=args.stop_timeout
    )
