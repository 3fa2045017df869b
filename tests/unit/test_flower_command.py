"""``memscribe flower``'s command line and environment: loopback by default, credentials in
the environment only, no persistent (shelve) mode."""

from __future__ import annotations

import pytest

from config.settings import Settings
from core.errors import ConfigurationError
from worker import flower
from worker.cli import build_parser


def option(command: list[str], name: str) -> str | None:
    """The last ``name=value`` in ``command`` (Flower's options: the last one wins)."""
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"{name}=")]
    return values[-1] if values else None


def test_defaults_bind_loopback_on_5555() -> None:
    """Without settings Flower binds 127.0.0.1:5555 and runs the Celery app's flower."""
    command = flower.flower_command(Settings(flower_password="pw"))
    assert command[1:5] == ["-m", "celery", "-A", "worker.app"] and command[5] == "flower"
    assert (option(command, "--address"), option(command, "--port")) == ("127.0.0.1", "5555")
    assert option(command, "--persistent") == "False"


def test_settings_and_flags_choose_the_address() -> None:
    """MEMSCRIBE_FLOWER_ADDRESS/PORT set the binding; --address/--port override them."""
    settings = Settings(flower_password="pw", flower_address="0.0.0.0", flower_port=6000)
    assert option(flower.flower_command(settings), "--address") == "0.0.0.0"
    command = flower.flower_command(settings, address="10.0.0.5", port=7000)
    assert (option(command, "--address"), option(command, "--port")) == ("10.0.0.5", "7000")


def test_password_goes_to_the_environment_not_argv() -> None:
    """The credentials are in FLOWER_BASIC_AUTH, never in the command line."""
    settings = Settings(flower_user="ops", flower_password="s3cret-pw")
    command = flower.flower_command(settings)
    assert not any("s3cret-pw" in arg for arg in command)
    env = flower.flower_env(settings, {"PATH": "/bin", "FLOWER_BASIC_AUTH": "old:pw"})
    assert env == {"PATH": "/bin", "FLOWER_BASIC_AUTH": "ops:s3cret-pw"}


def test_extra_options_pass_through_but_persistent_mode_stays_off() -> None:
    """Options after -- reach Flower; --persistent=True cannot turn the shelve file on."""
    args = build_parser().parse_args(
        ["flower", "--port", "5600", "--", "--max_tasks=500", "--persistent=True"]
    )
    assert (args.port, args.extra) == (5600, ["--max_tasks=500", "--persistent=True"])
    command = flower.flower_command(
        Settings(flower_password="pw"), port=args.port, extra=args.extra
    )
    assert option(command, "--max_tasks") == "500"
    assert option(command, "--persistent") == "False"


@pytest.mark.parametrize("extra", ["--basic-auth=u:p", "--basic_auth=u:p"])
def test_credentials_on_the_command_line_are_refused(extra: str) -> None:
    """--basic-auth after -- is refused: argv shows in ps."""
    with pytest.raises(ConfigurationError, match="MEMSCRIBE_FLOWER_PASSWORD"):
        flower.flower_command(Settings(flower_password="pw"), extra=[extra])


def test_auth_is_required_unless_disabled_explicitly() -> None:
    """No password: refused, naming the setting; flower_auth=false: no credentials at all."""
    with pytest.raises(ConfigurationError, match="MEMSCRIBE_FLOWER_PASSWORD"):
        flower.flower_env(Settings(), {})
    assert flower.flower_env(Settings(flower_auth=False), {"FLOWER_BASIC_AUTH": "x:y"}) == {}


def test_user_names_flower_cannot_parse_are_invalid_settings() -> None:
    """A user with ':' or ',' would split Flower's user:password list: invalid."""
    for user in ("a:b", "a,b", ""):
        with pytest.raises(ValueError):
            Settings(flower_user=user)
