"""Start and stop the processes a one-machine run needs: redis-server, a worker, beat."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import redis

from config.celery import family_queues
from core.errors import ConfigurationError


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_private_redis(url: str, *, workdir: Path) -> subprocess.Popen[bytes]:
    """A throwaway ``redis-server`` on the host and port of ``url`` (nothing kept on disk)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ConfigurationError(
            f"no Redis answers at {url} and redis-server is not installed. Install Redis "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or point "
            "MEMSCRIBE_REDIS_URL at a running server."
        )
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 6379
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise ConfigurationError(
                f"something listens on {host}:{port} but does not answer as Redis; "
                "set MEMSCRIBE_REDIS_URL to a Redis server"
            )
    workdir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            host,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # stop() signals the process group
    )
    deadline = time.monotonic() + 10
    while not redis_answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise ConfigurationError(f"redis-server did not start on {host}:{port}")
        time.sleep(0.05)
    return process


def celery_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "worker.app", *args]


def worker_command(
    families: Sequence[str] = (),
    *,
    queues: Sequence[str] = (),
    concurrency: int = 2,
    autoscale: tuple[int, int] | None = None,
    name: str = "memscribe",
    loglevel: str = "INFO",
) -> list[str]:
    """A plain Celery worker for task ``families`` ("persist", "llm", ...): their queues and
    retry queues (or exactly ``queues``). ``autoscale`` is (max, min) processes."""
    consumed = list(queues) or [queue for family in families for queue in family_queues(family)]
    # prefork, said explicitly: hard time limits and autoscaling need a process pool.
    pool = ["-P", "prefork", "-c", str(concurrency)]
    if autoscale:
        pool = ["-P", "prefork", "--autoscale", f"{autoscale[0]},{autoscale[1]}"]
    return celery_command(
        "worker",
        "-Q",
        ",".join(consumed),
        *pool,
        "-n",
        name if "@" in name else f"{name}@%h",
        "-l",
        loglevel,
        "--without-mingle",
        "--without-gossip",
    )


def beat_command(*, loglevel: str = "INFO") -> list[str]:
    return celery_command("beat", "-l", loglevel)


def memscribe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", *args]


def supervised_worker_command(
    families: Sequence[str],
    *,
    concurrency: int = 2,
    name: str = "memscribe",
    loglevel: str = "INFO",
    stop_timeout_s: float = 60,
) -> list[str]:
    """``memscribe worker``: the worker above under a supervisor that restarts it when it
    exits or stops draining (worker/supervisor.py)."""
    return memscribe_command(
        "worker",
        "--families",
        ",".join(families),
        "-c",
        str(concurrency),
        "-n",
        name,
        "-l",
        loglevel,
        "--stop-timeout",
        str(stop_timeout_s),
    )


def supervised_beat_command(*, loglevel: str = "INFO", stop_timeout_s: float = 30) -> list[str]:
    """``memscribe beat``: beat under a supervisor that restarts it when it exits or stops
    sending flush ticks."""
    return memscribe_command("beat", "-l", loglevel, "--stop-timeout", str(stop_timeout_s))


def start(
    command: Sequence[str], *, env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in its own process group (so stop() reaches its children too)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            list(command),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]


def stop(process: subprocess.Popen[bytes], *, timeout_s: float = 15) -> None:
    """SIGTERM the process (a warm shutdown for Celery: it stops its own children), then
    SIGKILL the whole group after ``timeout_s``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(process)


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole process group: no warm shutdown, no acks, like a crashed host."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
