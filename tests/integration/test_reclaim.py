"""A drainer killed with SIGKILL mid-batch: its entries are reclaimed, nothing lost or doubled."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from config.settings import Settings
from core.client import MemoryClient
from core.log.drainer import Drainer
from core.store.keys import CONSUMER_GROUP
from tests.conftest import (
    ROOT,
    assert_commit_order,
    assert_exactly_once,
    both_backends,
    messages_in_store,
)
from worker import processes


def _wait_ready(log: Path, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and "READY" in (text := log.read_text()):
            return int(text.split("READY", 1)[1].split()[0])
        time.sleep(0.05)
    raise AssertionError(f"the drainer never got ready: {log.read_text() if log.exists() else ''}")


@both_backends
@pytest.mark.parametrize("stage", ["read", "commit"])
def test_sigkill_before_xack_loses_and_doubles_nothing(
    client: MemoryClient,
    drainer: Drainer,
    settings: Settings,
    spawn: object,
    tmp_path: Path,
    stage: str,
    database_url: str,
) -> None:
    """Killed after reading (or after committing) a batch, before XACK: reclaim makes it whole."""
    appended = {}
    for i in range(2000):
        session_id = f"s-{i % 20}"
        result = client.append(session_id, "user", f"message {i}")
        appended[result.message_id] = ("default", session_id, result.seq, f"message {i}")

    doomed = spawn(  # type: ignore[operator]
        [sys.executable, str(ROOT / "tests/helpers/drain_then_hang.py"), stage],
        settings=settings,
        name="doomed",
    )
    held = _wait_ready(tmp_path / "doomed.log")
    processes.kill(doomed)

    pending = sum(
        client.redis.xpending(client.keys.wal(shard), CONSUMER_GROUP)["pending"]
        for shard in range(settings.shards)
    )
    assert pending == held > 0
    stored = len(messages_in_store(database_url))
    assert stored == (held if stage == "commit" else 0)

    assert drainer.flush(timeout_s=60) == 0
    assert_exactly_once(database_url, appended)
    assert assert_commit_order(database_url)
    assert all(status.pending == 0 for status in drainer.status())
