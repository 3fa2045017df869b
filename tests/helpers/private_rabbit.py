"""A private RabbitMQ node on free ports, with its own epmd, data, logs and cookie.

Never the machine's node (rabbit@localhost on 5672): this one is named after the test, listens
on loopback only, and everything it writes lives in ``workdir``. Tests kill -9 and restart it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers.private_redis import free_port

# The distribution's scripts run as the calling user; /usr/sbin/rabbitmq-server would switch to
# the rabbitmq user, who cannot write the test's tmp dir.
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


def rabbit_binary(name: str) -> str:
    candidate = RABBIT_BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    assert found, f"{name} is needed for this test (RabbitMQ server)"
    return found


class PrivateRabbit:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"msops{uuid.uuid4().hex[:8]}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.starts = 0
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        )
        (workdir / "enabled_plugins").write_text("[].\n")  # no management listener on 15672
        (workdir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq/rabbitmq-env.conf

    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        base = self.workdir
        return {
            **os.environ,
            "HOME": str(base),  # the Erlang cookie: private, not the machine node's
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_PLUGINS_EXPAND_BASE": str(base / "plugins-expand"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            # A private epmd on a free port: the machine's epmd and node are never involved.
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _start_epmd(self) -> None:
        # Ours, in the foreground, so close() stops it by its pid; the node finds it on its
        # port and starts no daemon of its own.
        self.epmd = subprocess.Popen(
            [shutil.which("epmd") or "epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.epmd_port), timeout=0.5),
            ):
                return
            assert time.monotonic() < deadline, "epmd did not start"
            time.sleep(0.05)

    def start(self, *, timeout_s: float = 60) -> float:
        """Start the node (replaying its data dir); returns how long it took to accept AMQP."""
        if self.epmd is None:
            self._start_epmd()
        began = time.monotonic()
        self.starts += 1
        log = open(self.workdir / f"server-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [rabbit_binary("rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kill() reaches beam.smp and its helpers
        )
        log.close()
        while not self._accepts_amqp():
            assert self.process.poll() is None, f"rabbitmq-server exited, see {log.name}"
            assert time.monotonic() - began < timeout_s, f"RabbitMQ did not start, see {log.name}"
            time.sleep(0.2)
        return time.monotonic() - began

    def _accepts_amqp(self) -> bool:
        """The AMQP listener answers a protocol header with connection.start (a frame)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(1) == b"\x01"
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9 the whole node: no shutdown, like a crashed host."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.process = None

    def close(self) -> None:
        self.kill()
        if self.epmd is not None:
            self.epmd.terminate()
            self.epmd.wait(timeout=10)
            self.epmd = None
