"""``memscribe flower``: Flower on the Celery app, with basic auth, bound to loopback.

memscribe flower                      # 127.0.0.1:5555, MEMSCRIBE_FLOWER_PASSWORD required
memscribe flower --port 5556 -- --max_tasks=50000   # after --: more options for Flower

It execs ``celery -A worker.app flower`` (so signals reach Flower itself). The credentials go
to Flower in its environment (``FLOWER_BASIC_AUTH``), never in argv, where ``ps`` shows them.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence

from config.settings import Settings
from core.errors import ConfigurationError
from worker import processes

log = logging.getLogger(__name__)

AUTH_ENV = "FLOWER_BASIC_AUTH"
# The tasks page shows each task's queue (routing key), retries and ids-only args; an option
# given after -- overrides these.
DEFAULTS = ("--tasks_columns=name,uuid,state,args,routing_key,retries,received,runtime,worker",)
# Flower's persistent mode is a shelve file (Python's object serializer): off, always last so
# no extra option turns it on. Task history lives in Flower's memory (--max_tasks).
FORCED = ("--persistent=False",)


def basic_auth(settings: Settings) -> str | None:
    """``user:password`` for FLOWER_BASIC_AUTH, or None when auth is explicitly disabled.

    Raises ConfigurationError (naming the setting, never the value) when auth is required and
    no usable password is configured.
    """
    password = settings.flower_password.get_secret_value()
    if not settings.flower_auth:
        log.warning(
            "Flower runs WITHOUT authentication (MEMSCRIBE_FLOWER_AUTH=false): anyone who "
            "reaches %s:%s sees every task and worker",
            settings.flower_address,
            settings.flower_port,
        )
        return None
    if not password:
        raise ConfigurationError(
            "Flower needs a password: set MEMSCRIBE_FLOWER_PASSWORD (basic auth is required; "
            "MEMSCRIBE_FLOWER_AUTH=false runs it open, which is not recommended)"
        )
    # Flower splits FLOWER_BASIC_AUTH on commas (a list of user:password pairs).
    if "," in password:
        raise ConfigurationError("MEMSCRIBE_FLOWER_PASSWORD must not contain a comma")
    return f"{settings.flower_user}:{password}"


def flower_command(
    settings: Settings,
    *,
    address: str | None = None,
    port: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The ``celery -A worker.app flower`` argv (no secret in it)."""
    for option in extra:
        if option.lstrip("-").replace("-", "_").startswith("basic_auth"):
            raise ConfigurationError(
                "pass credentials as MEMSCRIBE_FLOWER_USER / MEMSCRIBE_FLOWER_PASSWORD, not "
                "--basic-auth (argv shows in ps)"
            )
    return processes.celery_command(
        "flower",
        f"--address={address or settings.flower_address}",
        f"--port={port or settings.flower_port}",
        *DEFAULTS,
        *extra,
        *FORCED,
    )


def flower_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` with the credentials for Flower (or without any, when auth is off)."""
    env = dict(base)
    env.pop(AUTH_ENV, None)
    credentials = basic_auth(settings)
    if credentials is not None:
        env[AUTH_ENV] = credentials
    return env


def cmd_flower(settings: Settings, args: argparse.Namespace) -> int:
    command = flower_command(settings, address=args.address, port=args.port, extra=args.extra)
    env = flower_env(settings, os.environ)
    # Replace this process (no shell; argv is a list): signals reach Flower itself.
    os.execve(command[0], command, env)  # noqa: S606


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    flower = commands.add_parser(
        "flower",
        help="Flower monitoring with basic auth, on loopback unless MEMSCRIBE_FLOWER_ADDRESS",
    )
    flower.add_argument("--address", help="bind here (default MEMSCRIBE_FLOWER_ADDRESS)")
    flower.add_argument("--port", type=int, help="listen here (default MEMSCRIBE_FLOWER_PORT)")
    flower.add_argument(
        "extra", nargs="*", help="after --: more Flower options (--max_tasks=N, --url_prefix=P)"
    )
    flower.set_defaults(handler=cmd_flower)
