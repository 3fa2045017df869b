"""Keep a Celery worker (or beat) running: restart it when it exits or stops making progress.

Why: after a broker restart a Celery worker sometimes dies with ``Unrecoverable error:
AttributeError("'NoneType' object has no attribute 'hostname'")`` (kombu's Redis transport,
``_connparams`` on a channel whose connection was already dropped; celery/kombu#582,
celery/celery#10205), or stays up without consuming (celery/celery#8030). No broker setting
removes every such case, so durability must not depend on it: the supervisor runs Celery as a
child process group and

- restarts it, with exponential backoff, whenever it exits (for any reason, even 0: only a
  signal to the supervisor stops the loop);
- restarts it when its progress check fails for a whole stall window (``worker/progress.py``):
  for a persist worker, no completed flush while the write-ahead log has a backlog and beat is
  ticking; for beat, no flush tick sent;
- forwards SIGTERM/SIGINT as a warm shutdown (running tasks finish; with ``acks_late`` the
  unfinished ones are redelivered), a second one as a cold shutdown (SIGQUIT), and SIGKILLs the
  group if the child outlives ``stop_timeout_s``.

The child gets ``PR_SET_PDEATHSIG`` (Linux), so a SIGKILLed supervisor takes its child with it
(Celery's pool processes already die with their parent).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

import redis

from config.settings import Settings
from core.client import redis_from_url
from worker import progress

log = logging.getLogger("memscribe.supervisor")

# A child that stayed up this long is healthy again: the next restart waits only base_s.
HEALTHY_AFTER_S = 60.0
# The least time a fresh child has for its first progress (see _watch).
STARTUP_GRACE_S = 15.0
POLL_S = 0.2


@dataclass(frozen=True)
class RestartBackoff:
    base_s: float = 1.0
    cap_s: float = 30.0

    def delay_s(self, consecutive: int) -> float:
        return float(min(self.cap_s, self.base_s * 2 ** max(0, consecutive - 1)))


# A check answers True (healthy), False (stalled) or None (cannot tell: say nothing).
Check = Callable[[], bool | None]


def worker_check(settings: Settings, client: redis.Redis) -> Check:
    """A persist worker is stalled when no flush completed in the stall window, the WAL has a
    backlog, and beat is ticking (if beat is down, restarting the worker would not help)."""
    said = _SayOnce()

    def check() -> bool | None:
        try:
            if progress.recent(client, settings, progress.Marker.FLUSH):
                return said.nothing(True)
            waiting = progress.backlog(client, settings)
            if not waiting:
                return said.nothing(True)
            if not progress.recent(client, settings, progress.Marker.BEAT):
                said.once("beat", "no flush and no beat tick while %s entries wait", waiting)
                return None
            said.once(
                "stalled",
                "no flush completed in %.0fs while %s entries wait",
                settings.worker_stall_after_s,
                waiting,
            )
            return False
        except redis.RedisError as exc:
            # Redis itself is down: a new worker would not fare better. Check again later.
            said.once("redis", "progress check cannot reach Redis: %s", exc)
            return None

    return check


class _SayOnce:
    """Log a check's complaint when it starts, not on every check while it lasts."""

    def __init__(self) -> None:
        self.last = ""

    def once(self, kind: str, message: str, *args: object) -> None:
        if kind != self.last:
            log.warning(message, *args)
        self.last = kind

    def nothing(self, verdict: bool) -> bool:
        self.last = ""
        return verdict


def beat_check(settings: Settings, client: redis.Redis) -> Check:
    """Beat is stalled when it sent no flush tick in the stall window."""
    said = _SayOnce()

    def check() -> bool | None:
        try:
            if progress.recent(client, settings, progress.Marker.BEAT):
                return said.nothing(True)
            said.once("stalled", "beat sent no flush tick in %.0fs", settings.worker_stall_after_s)
            return False
        except redis.RedisError as exc:
            said.once("redis", "progress check cannot reach Redis: %s", exc)
            return None

    return check


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL me when the supervisor dies (Linux only)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Supervisor:
    def __init__(
        self,
        command: Sequence[str],
        *,
        name: str,
        check: Check | None = None,
        stall_after_s: float = 60.0,
        check_interval_s: float = 5.0,
        stop_timeout_s: float = 60.0,
        backoff: RestartBackoff | None = None,
    ) -> None:
        self.command = list(command)
        self.name = name
        self.check = check
        self.stall_after_s = stall_after_s
        self.check_interval_s = check_interval_s
        self.stop_timeout_s = stop_timeout_s
        self.backoff = backoff or RestartBackoff()
        self.restarts = 0
        self._stopping = 0  # signals received: 1 warm shutdown, 2+ cold

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT; returns the last child's exit status (128 + the
        signal number if a signal ended it, as a shell reports it)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        consecutive = 0
        status = 0
        while not self._stopping:
            started_at = time.monotonic()
            child = self._spawn()
            reason, progressed = self._watch(child, started_at)
            if reason == "stalled":
                # A stalled worker may not manage a warm shutdown: do not wait long for it.
                self._terminate(child, timeout_s=min(self.stop_timeout_s, 10.0))
            status = child.wait()
            self._kill_group(child)  # pool processes a crashed main process left behind
            if self._stopping:
                break
            # A child that made progress (or ran long enough) was healthy: its failure starts
            # the backoff afresh, so restarts after separate incidents stay quick.
            healthy = progressed or time.monotonic() - started_at > HEALTHY_AFTER_S
            consecutive = 1 if healthy else consecutive + 1
            delay = self.backoff.delay_s(consecutive)
            self.restarts += 1
            log.error(
                "%s %s (status %s); restart %s in %.1fs",
                self.name,
                "stalled" if reason == "stalled" else "exited",
                status,
                self.restarts,
                delay,
            )
            self._sleep(delay)
        return 128 - status if status < 0 else status

    def _spawn(self) -> subprocess.Popen[bytes]:
        log.info("starting %s: %s", self.name, " ".join(self.command))
        child = subprocess.Popen(
            self.command,
            process_group=0,  # its own group: a stall restart reaches its pool processes
            # preexec_fn is unsafe with threads; the supervisor runs none.
            preexec_fn=_die_with_parent,
        )
        return child

    def _watch(self, child: subprocess.Popen[bytes], started_at: float) -> tuple[str, bool]:
        """Wait until the child exits ("exited"), stalls ("stalled") or we stop ("stopping");
        also say whether a check saw it make progress."""
        next_check = started_at + self.check_interval_s
        progressed = False
        while child.poll() is None:
            if self._stopping:
                self._shut_down(child)
                return "stopping", progressed
            now = time.monotonic()
            if self.check is not None and now >= next_check:
                next_check = now + self.check_interval_s
                # The markers expire after the stall window, so one failed check already
                # means a whole window without progress.
                healthy = self.check()
                # A fresh child gets a whole stall window to make its first progress, and
                # never less than STARTUP_GRACE_S: on a loaded machine importing Celery and
                # the tasks alone can outlast a short window, and restarting then only
                # starts the same slow start again.
                grace = max(self.stall_after_s, STARTUP_GRACE_S)
                if healthy is False and now - started_at >= grace:
                    return "stalled", progressed
                progressed = progressed or healthy is True
            time.sleep(POLL_S)
        return "exited", progressed

    def _shut_down(self, child: subprocess.Popen[bytes]) -> None:
        """Warm shutdown on the first signal, cold on the second, SIGKILL after the timeout."""
        sent = 0
        deadline = time.monotonic() + self.stop_timeout_s
        while child.poll() is None:
            if self._stopping > sent:
                sent = self._stopping
                self._signal(child, signal.SIGTERM if sent == 1 else signal.SIGQUIT)
            if time.monotonic() > deadline:
                log.error("%s did not stop in %.0fs: SIGKILL", self.name, self.stop_timeout_s)
                self._kill_group(child)
                return
            time.sleep(POLL_S)

    def _terminate(self, child: subprocess.Popen[bytes], *, timeout_s: float) -> None:
        """Warm shutdown of a stalled child; SIGKILL its group if it does not go in time.
        Safe either way: tasks are acked late, so an interrupted flush is redelivered and the
        drainer's replay inserts nothing twice."""
        self._signal(child, signal.SIGTERM)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill_group(child)

    def _signal(self, child: subprocess.Popen[bytes], signum: int) -> None:
        # Only the Celery main process: it stops its own pool (a signal to the whole group
        # would make every pool process abort its task).
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    def _kill_group(self, child: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(POLL_S)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stopping += 1
        log.info("%s: %s received, stopping %s", self.name, signal.Signals(signum).name, self.name)


def supervise(
    command: Sequence[str],
    *,
    settings: Settings,
    name: str,
    role: str,
    stop_timeout_s: float,
) -> int:
    """Run ``command`` under a supervisor with the progress check of ``role``
    ("persist-worker", "worker" without a check, or "beat")."""
    client = redis_from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    checks = {"persist-worker": worker_check, "beat": beat_check}
    check = checks[role](settings, client) if role in checks else None
    supervisor = Supervisor(
        command,
        name=name,
        check=check,
        stall_after_s=settings.worker_stall_after_s,
        check_interval_s=settings.worker_check_interval_s,
        stop_timeout_s=stop_timeout_s,
    )
    try:
        return supervisor.run()
    finally:
        client.close()
