"""``memscribe backup``: every verb in a subprocess, its JSON, its exit status on failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from tests.helpers.backup_data import differences, seed, table_rows
from tests.integration.test_backups import fresh_url  # noqa: F401 (fixture)
from tests.integration.test_cli import memscribe


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, backup_url=f"file://{tmp_path / 'b'}")


def test_run_list_verify_restore_prune_from_the_command_line(
    client: MemoryClient,
    drainer: Drainer,
    settings: Settings,
    tmp_path: Path,
    fresh_url: Callable[[str], str],  # noqa: F811
) -> None:
    """run (full, then incremental), list --json, verify, restore, prune: all exit 0, and the
    restore equals the source."""
    seed(client, drainer)
    first = memscribe(settings, "backup", "run", "--json")
    client.append("cli-session", "user", "one more", subject_id="subject-cli")
    drainer.drain_all()
    second = memscribe(settings, "backup", "run", "--json")
    listed = memscribe(settings, "backup", "list", "--json")
    verified = memscribe(settings, "backup", "verify")
    url = fresh_url("cli")
    newest = json.loads(second.stdout)["backup"]["id"]
    restored = memscribe(settings, "backup", "restore", newest, "--into", url, "--json")
    pruned = memscribe(settings, "backup", "prune", "--json")

    for done in (first, second, listed, verified, restored, pruned):
        assert done.returncode == 0, done.stdout + done.stderr
    backups = json.loads(listed.stdout)
    assert [b["kind"] for b in backups] == ["incremental", "full"]
    assert all({"id", "kind", "created_at", "rows"} <= set(b) for b in backups)
    assert backups[0]["id"] == newest and backups[0]["parent"] == backups[1]["id"]
    assert "verified 2 backups: 2 ok, 0 failed" in verified.stdout
    assert json.loads(restored.stdout)["chain"] == [backups[1]["id"], newest]
    assert differences(table_rows(settings.database_url), table_rows(url)) == []
    assert json.loads(pruned.stdout)["kept"] == [newest, backups[1]["id"]]


def test_failures_exit_non_zero_and_say_what_failed(
    client: MemoryClient, drainer: Drainer, settings: Settings, tmp_path: Path
) -> None:
    """A corrupted object fails verify (1, naming it); restoring into a database that is not
    empty fails (2), and so does an unknown backup id."""
    seed(client, drainer, subjects=1)
    backup = json.loads(memscribe(settings, "backup", "run", "--json").stdout)["backup"]
    victim = next((tmp_path / "b" / "backups" / backup["id"]).glob("messages.rows.msb"))
    raw = bytearray(victim.read_bytes())
    raw[-5] ^= 0xFF
    victim.write_bytes(bytes(raw))

    verified = memscribe(settings, "backup", "verify", backup["id"])
    into_live = memscribe(
        settings, "backup", "restore", backup["id"], "--into", settings.database_url
    )
    unknown = memscribe(settings, "backup", "restore", "20200101T000000000Z-000000", "--into", "x")

    assert verified.returncode == 1 and "messages.rows.msb" in verified.stdout
    assert into_live.returncode == 2 and "not empty" in into_live.stdout
    assert unknown.returncode == 2 and "no backup" in unknown.stdout
