"""`memscribe health [--json]` and the exporter's /livez and /readyz, on the real stores."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from config.settings import Settings
from core.client import MemoryClient
from core.observability.server import Exporter
from core.store.keys import Keys
from tests.conftest import ROOT, SettingsFactory, settings_env
from worker import processes
from worker.observe import flush_marker

FIELDS = {
    "redis",
    "broker",
    "store",
    "wal_lag",
    "wal_lag_bound",
    "beat_owner",
    "last_flush_age_s",
    "last_backup_age_s",
    "ok",
    "reasons",
}


def health(settings: Settings, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "worker.cli", "health", "--json", *args],
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, json.loads(result.stdout)


def get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_healthy_stores_report_ok(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Redis, broker and store answer, no backlog: exit 0, ok, every field reported."""
    settings = make_settings(database_url=pg_database, metrics_dir=str(tmp_path / "m"))
    keys = Keys.of(settings)
    redis_client.set(keys.beat_leader(), "beat-a:3f2c")
    redis_client.set(
        flush_marker(settings), "worker:1", px=int(settings.worker_stall_after_s * 1000)
    )
    code, report = health(settings)
    assert code == 0, report
    assert set(report) == FIELDS
    assert report["ok"] is True and report["reasons"] == []
    assert report["redis"] and report["broker"] and report["store"]
    assert report["wal_lag"] == 0
    assert report["wal_lag_bound"] == settings.health_max_lag
    assert report["beat_owner"] == "beat-a:3f2c"
    assert 0 <= report["last_flush_age_s"] < 5
    assert report["last_backup_age_s"] is None


def test_lag_over_its_bound_fails_health_and_readyz(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A backlog with a lag bound of 0: exit 1, ok false, and /readyz answers 503 with it."""
    settings = make_settings(
        database_url=pg_database, metrics_dir=str(tmp_path / "m"), health_max_lag=0
    )
    client = MemoryClient(redis=redis_client, settings=settings)
    for i in range(12):
        client.append(f"s-{i}", "user", "hello")
    code, report = health(settings)
    assert code == 1
    assert report["ok"] is False
    assert report["wal_lag"] == 12
    assert any("wal lag 12" in reason for reason in report["reasons"])
    assert report["redis"] and report["broker"] and report["store"]

    exporter = Exporter(settings, host="127.0.0.1", port=0, flush_marker_key=flush_marker(settings))
    exporter.start()
    try:
        assert get(exporter.port, "/livez") == (200, b"ok\n")
        status, body = get(exporter.port, "/readyz")
        assert status == 503
        assert json.loads(body)["wal_lag"] == 12
        healthy = settings.model_copy(update={"health_max_lag": 100})
        ready = Exporter(healthy, host="127.0.0.1", port=0, flush_marker_key=flush_marker(healthy))
        ready.start()
        try:
            status, body = get(ready.port, "/readyz")
            assert status == 200 and json.loads(body)["ok"] is True
        finally:
            ready.stop()
    finally:
        exporter.stop()


def test_backup_age_fails_health_only_when_configured(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A two-hour-old backup is reported; it fails health only with a max age below that."""
    settings = make_settings(database_url=pg_database, metrics_dir=str(tmp_path / "m"))
    completed = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    redis_client.hset(
        Keys.of(settings).backup_last(), mapping={"id": "b1", "completed_at": completed}
    )
    code, report = health(settings)
    assert code == 0 and report["ok"] is True
    assert 7190 < report["last_backup_age_s"] < 7300
    strict = settings.model_copy(update={"health_max_backup_age_s": 3600.0})
    code, report = health(strict)
    assert code == 1 and report["ok"] is False
    assert any("backup" in reason for reason in report["reasons"])


def test_unreachable_store_fails_health(
    make_settings: SettingsFactory, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A store that does not answer: exit 1, store false, the others still true."""
    settings = make_settings(
        database_url="postgresql+psycopg2://postgres@127.0.0.1:1/nowhere",
        metrics_dir=str(tmp_path / "m"),
    )
    code, report = health(settings)
    assert code == 1
    assert report["store"] is False and report["redis"] is True and report["broker"] is True
    assert any(reason.startswith("store:") for reason in report["reasons"])


def test_metrics_command_serves_the_endpoints(
    make_settings: SettingsFactory,
    pg_database: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    spawn: Any,
) -> None:
    """`memscribe metrics` as operators run it: /livez, /readyz and /metrics answer."""
    settings = make_settings(database_url=pg_database, metrics_dir=str(tmp_path / "m"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spawn(processes.memscribe_command("metrics", "--port", str(port)), settings=settings, name="m")
    deadline = time.monotonic() + 30
    while True:
        try:
            status, body = get(port, "/livez")
            break
        except OSError:
            assert time.monotonic() < deadline, "memscribe metrics did not start"
            time.sleep(0.2)
    assert (status, body) == (200, b"ok\n")
    status, body = get(port, "/readyz")
    assert status == 200 and json.loads(body)["ok"] is True
    status, body = get(port, "/metrics")
    assert status == 200
    assert "memscribe_up 1.0" in body.decode()
    assert 'memscribe_wal_backlog{shard="0"} 0.0' in body.decode()
    assert get(port, "/nothing")[0] == 404
