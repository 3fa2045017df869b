"""Helpers for tests of `memscribe worker` / `memscribe beat`: find the Celery child, read logs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def celery_child(supervisor: subprocess.Popen[bytes], *, timeout_s: float = 30) -> int:
    """The pid of the Celery main process the supervisor runs (waits for it to appear)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        kids = children(supervisor.pid)
        if kids:
            return kids[0]
        time.sleep(0.1)
    raise AssertionError("the supervisor started no child")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): read its state.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return False


def count_in_log(path: Path, text: str) -> int:
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def wait_for_log(path: Path, text: str, *, times: int = 1, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while count_in_log(path, text) < times:
        assert time.monotonic() < deadline, f"{text!r} x{times} not in {path.name} in {timeout_s}s"
        time.sleep(0.2)
