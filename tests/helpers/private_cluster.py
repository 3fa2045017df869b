"""A private 3-master Redis Cluster on free loopback ports, built with ``redis-cli --cluster``."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis

BUS_OFFSET = 10_000  # a node's cluster bus listens on its port + 10000


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_ports(count: int) -> list[int]:
    """Ports whose bus port (+10000) is free too; below the ephemeral range, so a client socket
    the kernel hands out meanwhile cannot take one."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20_000, 30_000)
        if port not in ports and _bindable(port) and _bindable(port + BUS_OFFSET):
            ports.append(port)
    return ports


class PrivateCluster:
    """Three masters, no replicas, nothing on disk but the nodes files."""

    def __init__(self, workdir: Path, *, masters: int = 3) -> None:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert server and cli, "redis-server and redis-cli are needed for the cluster tests"
        self.server, self.cli = server, cli
        self.workdir = workdir
        self.ports = free_cluster_ports(masters)
        self.processes: list[subprocess.Popen[bytes]] = []
        self._nodes: dict[int, redis.Redis] = {}
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """Any node will do: the client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        """A plain client of one node (for INFO, CLUSTER INFO and the like)."""
        if port not in self._nodes:
            self._nodes[port] = redis.Redis(
                port=port, socket_connect_timeout=1, decode_responses=True
            )
        return self._nodes[port]

    def start(self, *, timeout_s: float = 30) -> None:
        for port in self.ports:
            self.processes.append(
                subprocess.Popen(
                    [
                        self.server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(self.workdir / f"nodes-{port}.conf"),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(self.workdir),
                        "--logfile",
                        str(self.workdir / f"redis-{port}.log"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + timeout_s
        for port in self.ports:
            self._wait(partial(self._answers, port), deadline, f"node {port} to start")
        created = subprocess.run(
            [
                self.cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        for port in self.ports:
            self._wait(partial(self._serving, port), deadline, f"node {port}: cluster_state:ok")

    def _answers(self, port: int) -> bool:
        return bool(self.node(port).ping())

    def _serving(self, port: int) -> bool:
        """Every slot is assigned and this node knows it (CLUSTER INFO cluster_state:ok)."""
        return bool(self.node(port).cluster("info")["cluster_state"] == "ok")

    @staticmethod
    def _wait(ready: Callable[[], Any], deadline: float, what: str) -> None:
        while True:
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def error_counts(self) -> dict[int, dict[str, int]]:
        """Per node: replies of each error kind since the last reset (INFO errorstats)."""
        counts = {}
        for port in self.ports:
            stats = self.node(port).info("errorstats")
            counts[port] = {
                name.removeprefix("errorstat_"): int(value["count"])
                for name, value in stats.items()
            }
        return counts

    def reset_stats(self) -> None:
        for port in self.ports:
            self.node(port).config_resetstat()

    def stop(self) -> None:
        for client in self._nodes.values():
            client.close()
        self._nodes = {}
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes = []
