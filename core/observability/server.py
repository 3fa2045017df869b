"""``memscribe metrics``: one exporter per host, serving /metrics, /livez and /readyz.

One process rather than an endpoint in every worker: prefork children cannot share a port,
Celery's ``--autoscale`` starts and stops them at will, and a per-worker endpoint would make
Prometheus discover targets that come and go (the series churn of Flower PR#1492, in another
place). The workers write samples to ``MEMSCRIBE_METRICS_DIR``; this process sums them
(``MultiProcessCollector``) and adds what is read live from Redis (``RedisCollector``). It must
run on the workers' host (a shared volume in docker-compose); one per host, scraped as one
target each.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from config.settings import Settings
from core.observability.collector import RedisCollector
from core.observability.health import Health, check_health
from core.store.connections import redis_from_url

log = logging.getLogger(__name__)
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds up shutdown


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def build_registry(settings: Settings) -> CollectorRegistry:
    """The workers' samples from the metrics directory plus the live Redis gauges."""
    # Only read here: this process writes no samples of its own, so it needs no multiprocess
    # value class (and tests may run it in-process).
    directory = Path(settings.metrics_dir).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    client = redis_from_url(
        settings.redis_url,
        cluster=settings.redis_cluster,
        socket_timeout=5,
        socket_connect_timeout=5,
    )
    registry.register(RedisCollector(client, settings))
    return registry


def make_app(
    settings: Settings,
    *,
    flush_marker_key: str,
    health: Callable[[], Health] | None = None,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The exporter's WSGI application."""
    registry = build_registry(settings)
    probe = health or (lambda: check_health(settings, flush_marker_key=flush_marker_key))

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = generate_latest(registry)
            start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
            return [body]
        if path == "/livez":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok\n"]
        if path == "/readyz":
            verdict = probe()
            status = "200 OK" if verdict.ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [json.dumps(verdict.as_dict()).encode() + b"\n"]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: /metrics, /livez, /readyz\n"]

    return app


class Exporter:
    """The HTTP server, started on a thread (tests) or run in the foreground (the CLI)."""

    def __init__(self, settings: Settings, *, host: str, port: int, flush_marker_key: str) -> None:
        self.server = make_server(
            host,
            port,
            make_app(settings, flush_marker_key=flush_marker_key),
            server_class=_ThreadingServer,
            handler_class=_QuietHandler,
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def serve_forever(self) -> None:
        self.server.serve_forever()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
