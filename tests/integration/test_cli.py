"""The memscribe command line, run as operators run it (a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys

from config.settings import Settings
from core.client import MemoryClient
from tests.conftest import ROOT, assert_exactly_once, settings_env


def memscribe(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_json_reports_each_shard(client: MemoryClient, settings: Settings) -> None:
    """status --json gives length, pending and backlog per shard, and totals."""
    for i in range(30):
        client.append(f"s-{i}", "user", "hello")
    result = memscribe(settings, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert len(status["shards"]) == settings.shards
    assert {
        "shard",
        "length",
        "pending",
        "undelivered",
        "backlog",
        "oldest_pending_age_s",
        "dead_letters",
    } <= set(status["shards"][0])
    assert status["totals"]["length"] == 30
    assert status["totals"]["backlog"] == 30
    assert sum(shard["backlog"] for shard in status["shards"]) == 30


def test_flush_wait_drains_everything(
    client: MemoryClient, settings: Settings, database_url: str
) -> None:
    """flush --wait returns 0 once every appended message is durable."""
    appended = {}
    for i in range(500):
        result = client.append(f"s-{i % 9}", "user", f"m{i}")
        appended[result.message_id] = ("default", f"s-{i % 9}", result.seq, f"m{i}")
    result = memscribe(settings, "flush", "--wait", "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "backlog is zero" in result.stdout
    assert_exactly_once(database_url, appended)
    status = json.loads(memscribe(settings, "status", "--json").stdout)
    assert status["totals"]["backlog"] == 0


def test_migrate_is_idempotent(settings: Settings) -> None:
    """migrate on an up-to-date database succeeds and changes nothing."""
    for _ in range(2):
        result = memscribe(settings, "migrate")
        assert result.returncode == 0, result.stderr
        assert "migrated" in result.stdout
