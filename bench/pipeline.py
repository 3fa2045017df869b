"""Real worker processes for the sections that need them: memscribe's and the naive app's.

Both are started through ``worker.processes`` with the bench's stores in their environment,
and each is proven live (one message made durable) before a section times anything, so no
figure includes a worker's start-up.
"""

from __future__ import annotations

import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from subprocess import Popen
from typing import Any

from bench import naive_app, stores
from bench.context import BenchContext, log
from worker import processes

LIVE_TIMEOUT_S = 90


def _wait_live(
    ctx: BenchContext, tenant: str, process: Popen[bytes], name: str, log_name: str
) -> None:
    deadline = time.monotonic() + LIVE_TIMEOUT_S
    while not stores.count_rows(ctx.engine, tenant):
        if process.poll() is not None or time.monotonic() > deadline:
            raise stores.BenchError(
                f"the {name} made nothing durable (exit code {process.poll()}); "
                f"see {ctx.log_dir / log_name}"
            )
        time.sleep(0.05)


@contextmanager
def memscribe_pipeline(ctx: BenchContext) -> Iterator[None]:
    """One ``persist`` worker (concurrency 2) and beat, as deployed; live when entered."""
    started: list[Popen[bytes]] = []
    env = ctx.worker_env()
    try:
        worker = processes.start(
            processes.worker_command(["persist"], concurrency=2, name="bench", loglevel="WARNING"),
            env=env,
            log_path=ctx.log_dir / "memscribe-worker.log",
        )
        started.append(worker)
        started.append(
            processes.start(
                processes.beat_command(loglevel="WARNING"),
                env=env,
                log_path=ctx.log_dir / "memscribe-beat.log",
            )
        )
        tenant = f"warmup-{uuid.uuid4().hex[:8]}"
        ctx.client.append("warm-up", "system", "is the pipeline live?", tenant=tenant)
        _wait_live(ctx, tenant, worker, "memscribe worker", "memscribe-worker.log")
        log("memscribe worker and beat are live")
        yield
    finally:
        for process in reversed(started):
            processes.stop(process)


class NaiveWorker:
    """The naive app's worker, paused and resumed through Celery's remote control."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname

    def _control(self, call: Callable[..., Any], action: str) -> None:
        replies = call(naive_app.QUEUE, destination=[self.hostname], reply=True, timeout=5)
        if not replies:
            raise stores.BenchError(f"the naive worker did not confirm {action}")

    def pause(self) -> None:
        """Stop consuming: tasks sent now wait in the broker."""
        self._control(naive_app.app.control.cancel_consumer, "cancel_consumer")

    def resume(self) -> None:
        self._control(naive_app.app.control.add_consumer, "add_consumer")


@contextmanager
def naive_worker(ctx: BenchContext) -> Iterator[NaiveWorker]:
    """The naive app's worker, prefork with two children (memscribe's worker has the same)."""
    hostname = f"naive-bench@{socket.gethostname()}"
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.naive_app",
        "worker",
        "-Q",
        naive_app.QUEUE,
        "-c",
        "2",
        "-n",
        hostname,
        "-l",
        "WARNING",
        "--without-mingle",
        "--without-gossip",
    ]
    process = processes.start(command, env=ctx.worker_env(), log_path=ctx.log_dir / "naive.log")
    try:
        tenant = f"warmup-{uuid.uuid4().hex[:8]}"
        naive_app.save.delay(
            message_id=uuid.uuid4().hex,
            tenant=tenant,
            session_id="warm-up",
            seq=1,
            role="system",
            content="is the naive worker live?",
            tokens=8,
            created_us=time.time_ns() // 1000,
        )
        _wait_live(ctx, tenant, process, "naive worker", "naive.log")
        log("naive worker is live")
        yield NaiveWorker(hostname)
    finally:
        processes.stop(process)
