"""``memscribe metrics`` (the Prometheus exporter) and ``memscribe health [--json]``.

memscribe metrics --port 9808 [--host 127.0.0.1]
memscribe health --json
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from config.settings import Settings
from core.observability.health import check_health
from core.observability.server import Exporter
from worker import progress

log = logging.getLogger(__name__)
DEFAULT_PORT = 9808  # celery-exporter's port: dashboards and scrape configs already use it


def flush_marker(settings: Settings) -> str:
    return progress.marker_key(settings, progress.Marker.FLUSH)


def add_parsers(commands: Any) -> None:
    metrics = commands.add_parser(
        "metrics",
        help="the Prometheus exporter: /metrics (workers' samples and the live WAL), /livez, "
        "/readyz",
    )
    metrics.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    metrics.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"({DEFAULT_PORT})")
    metrics.set_defaults(handler=cmd_metrics)


def cmd_metrics(settings: Settings, args: argparse.Namespace) -> int:
    exporter = Exporter(
        settings, host=args.host, port=args.port, flush_marker_key=flush_marker(settings)
    )
    print(f"memscribe metrics on http://{args.host}:{exporter.port}/metrics", flush=True)
    try:
        exporter.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.server.server_close()
    return 0


def cmd_health_all(settings: Settings, args: argparse.Namespace) -> int:
    """``memscribe health``: 0 when Redis, the broker and the store answer and the WAL's lag is
    under its bound (and the newest backup young enough, when configured); else 1."""
    verdict = check_health(settings, flush_marker_key=flush_marker(settings))
    if args.json:
        print(json.dumps(verdict.as_dict(), indent=2))
    else:
        print("ok" if verdict.ok else "unhealthy: " + "; ".join(verdict.reasons))
    return 0 if verdict.ok else 1
