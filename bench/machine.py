"""What the numbers were measured on: cores, CPU, store versions and durability settings."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("redis", "hiredis", "celery", "kombu", "SQLAlchemy", "psycopg2-binary", "tiktoken")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git() -> dict[str, Any]:
    def run(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": run("rev-parse", "HEAD") or None, "dirty": bool(run("status", "--porcelain"))}


def describe(client: redis.Redis, engine: Engine) -> dict[str, Any]:
    server = client.info("server")
    persistence = client.config_get("appendonly")
    persistence |= client.config_get("appendfsync")
    persistence |= client.config_get("maxmemory-policy")
    with engine.connect() as connection:

        def show(name: str) -> str:
            return str(connection.execute(sa.text(f"SHOW {name}")).scalar_one())

        postgres = {
            "version": show("server_version"),
            "synchronous_commit": show("synchronous_commit"),
            "fsync": show("fsync"),
            "shared_buffers": show("shared_buffers"),
        }
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": _cpu_model(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "redis": {"version": server["redis_version"], **persistence},
        "postgresql": postgres,
        "packages": {package: _version(package) for package in PACKAGES},
        "git": _git(),
    }


def one_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine['cores']} cores ({machine['cpu']}), Redis {machine['redis']['version']} "
        f"(appendonly {machine['redis'].get('appendonly')}), PostgreSQL "
        f"{machine['postgresql']['version']} (synchronous_commit "
        f"{machine['postgresql']['synchronous_commit']}), Python {machine['python']}, "
        f"load average at start {machine['load_average'][0]:.2f}"
    )
