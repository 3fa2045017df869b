"""A Redis one real network hop away: a network namespace of the bench's own, a veth pair, and
``tc netem`` delay on the link, or, on kernels without netem ("Specified qdisc kind is
unknown"), a delay proxy inside the namespace (``bench/delay_proxy.py``) that holds each chunk
for half the delay in each direction. Needs root (``ip netns``); everything is removed
afterwards.

Addresses are a /30 of the bench's own inside its namespace: nothing else is reachable there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.stores import BenchError
from worker import processes

NAMESPACE = "msbench"
HOST_SIDE, REDIS_SIDE = "msb-host", "msb-redis"
HOST_ADDRESS, REDIS_ADDRESS = "10.213.7.1", "10.213.7.2"
REDIS_PORT = 6390
PROXY_PORT = 6391


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def unavailable() -> str | None:
    """Why a namespace cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root for ip netns"
    for tool in ("ip", "tc", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _teardown() -> None:
    subprocess.run(["ip", "link", "del", HOST_SIDE], capture_output=True)
    subprocess.run(["ip", "netns", "del", NAMESPACE], capture_output=True)


def _netem(delay_ms: float) -> bool:
    done = subprocess.run(
        ["tc", "qdisc", "add", "dev", HOST_SIDE, "root", "netem", "delay", f"{delay_ms}ms"],
        capture_output=True,
    )
    return done.returncode == 0


@contextmanager
def redis_behind_a_hop(*, delay_ms: float, log_dir: Path) -> Iterator[tuple[str, str]]:
    """A throwaway redis-server in the namespace, a round trip of about ``delay_ms`` more away.
    Yields its URL (database 0) and how the delay is made ("netem" or "delay proxy")."""
    _teardown()  # a run that was killed may have left them
    _ip("netns", "add", NAMESPACE)
    try:
        _ip("link", "add", HOST_SIDE, "type", "veth", "peer", "name", REDIS_SIDE)
        _ip("link", "set", REDIS_SIDE, "netns", NAMESPACE)
        _ip("addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_SIDE)
        _ip("link", "set", HOST_SIDE, "up")
        _ip("-n", NAMESPACE, "addr", "add", f"{REDIS_ADDRESS}/30", "dev", REDIS_SIDE)
        _ip("-n", NAMESPACE, "link", "set", REDIS_SIDE, "up")
        _ip("-n", NAMESPACE, "link", "set", "lo", "up")
        inside = ["ip", "netns", "exec", NAMESPACE]
        netem = _netem(delay_ms)
        bind = REDIS_ADDRESS if netem else "127.0.0.1"
        command = [*inside, "redis-server", "--bind", bind, "--port", str(REDIS_PORT)]
        command += ["--save", "", "--appendonly", "no", "--dir", str(log_dir)]
        command += ["--protected-mode", "no"]
        started = [processes.start(command, log_path=log_dir / "netns-redis.log")]
        port = REDIS_PORT
        if not netem:
            proxy = [*inside, sys.executable, "-m", "bench.delay_proxy"]
            proxy += [f"{REDIS_ADDRESS}:{PROXY_PORT}", f"127.0.0.1:{REDIS_PORT}", str(delay_ms / 2)]
            started.append(processes.start(proxy, log_path=log_dir / "netns-proxy.log"))
            port = PROXY_PORT
        url = f"redis://{REDIS_ADDRESS}:{port}/0"
        try:
            deadline = time.monotonic() + 10
            while not processes.redis_answers(url):
                if any(p.poll() is not None for p in started) or time.monotonic() > deadline:
                    raise BenchError("the redis-server in the bench's namespace did not start")
                time.sleep(0.05)
            yield url, "netem" if netem else "delay proxy"
        finally:
            for process in started:
                processes.stop(process)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"could not build the bench's namespace: {exc.stderr!r}") from exc
    finally:
        _teardown()
