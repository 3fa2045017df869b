"""Flower against a real worker: ``memscribe flower`` requires basic auth, lists the worker,
shows persist.flush and llm.summarize with their queues and states (SUCCESS, RETRY), and no
task argument it shows carries message content."""

from __future__ import annotations

import ast
import base64
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from config.celery import family_queues
from config.settings import Settings
from core.client import MemoryClient
from tasks.llm import broker_enqueue
from tests.conftest import settings_env
from tests.fakes.openai_server import FakeOpenAI, rate_limited
from worker import flower, processes

SettingsFactory = Callable[..., Settings]
Spawn = Callable[..., Any]
USER, PASSWORD = "ops", "flower-test-password"
# Every message carries this; no task argument Flower shows may contain it.
CONTENT_MARK = "confidential-flower-probe"
# The rate-limited summarize's countdown (its retry queue has no consumer yet, anyway).
RETRY_AFTER_S = "2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(url: str, *, auth: tuple[str, str] | None = (USER, PASSWORD)) -> tuple[int, bytes]:
    """(status, body) of a GET, with basic auth unless ``auth`` is None."""
    request = urllib.request.Request(url)
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def listening_addresses(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses something listens on at ``port`` (Linux /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 90, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (OSError, ValueError):  # Flower not listening yet, or a half-written answer
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or condition}")


def tasks_by_state(base: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Flower's /api/tasks as {(task name, state): one such task}."""
    status, body = get(f"{base}/api/tasks")
    assert status == 200
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for task_id, task in json.loads(body).items():
        found.setdefault((task["name"], task["state"]), {**task, "uuid": task_id})
    return found


def cross_trigger(client: MemoryClient, session: str) -> None:
    """Append until the session crosses the summary trigger (the drainer then sends
    llm.summarize for it)."""
    for i in range(12):
        client.append(session, "user", f"{CONTENT_MARK} {session} Carol moved to room {i}.")
    assert client.memory_stats(session).summary_pending


@pytest.fixture
def flower_settings(
    make_settings: SettingsFactory, pg_database: str, fake_openai: FakeOpenAI
) -> Settings:
    return make_settings(
        database_url=pg_database,
        summarizer="openai",
        openai_base_url=fake_openai.url,
        summary_trigger_tokens=100,
        keep_recent_tokens=30,
        retry_base_ms=20,
        max_retries=3,
        flower_user=USER,
        flower_password=PASSWORD,
        flower_port=free_port(),
    )


def test_flower_shows_worker_tasks_and_states_behind_basic_auth(
    flower_settings: Settings,
    redis_client: redis.Redis,
    spawn: Spawn,
    fake_openai: FakeOpenAI,
) -> None:
    """A real worker and ``memscribe flower``: the worker is listed, persist.flush SUCCESS and
    llm.summarize SUCCESS and RETRY appear with their queues, args are ids only, and requests
    without (or with wrong) credentials get 401."""
    settings = flower_settings
    base = f"http://127.0.0.1:{settings.flower_port}"
    spawn(processes.memscribe_command("flower"), settings=settings, name="flower")
    # Every queue but llm.retry: a worker that consumed it would receive the retried summarize
    # at once, and Flower ranks RECEIVED above RETRY (celery.states.PRECEDENCE), so RETRY would
    # show for milliseconds only. The retry queue's own worker starts after the RETRY check.
    fresh = [q for q in family_queues("persist") + family_queues("llm") if q != "llm.retry"]
    spawn(
        processes.worker_command(queues=fresh, concurrency=1, name="flowertest"),
        settings=settings,
        name="worker",
    )
    wait_for(lambda: get(f"{base}/healthcheck", auth=None)[0] == 200, what="Flower to listen")
    assert listening_addresses(settings.flower_port) == {"127.0.0.1"}
    # The credentials reached Flower through its environment, not its command line.
    assert PASSWORD not in " ".join(flower.flower_command(settings))

    workers = wait_for(
        lambda: json.loads(get(f"{base}/api/workers?refresh=1")[1]) or None,
        what="Flower to see the worker",
    )
    assert any(name.startswith("flowertest@") for name in workers), workers

    enqueue = broker_enqueue(settings)
    client = MemoryClient(redis=redis_client, settings=settings, enqueue=enqueue)
    cross_trigger(client, "a")
    enqueue("persist.flush", [])
    wait_for(lambda: client.memory_stats("a").summary_count == 1, what="session a's summary")

    # The next summarize is rate limited: it is retried on llm.retry, and waits there in RETRY.
    fake_openai.script(rate_limited(RETRY_AFTER_S))
    cross_trigger(client, "b")
    enqueue("persist.flush", [])
    wanted = {
        ("persist.flush", "SUCCESS"),
        ("llm.summarize", "SUCCESS"),
        ("llm.summarize", "RETRY"),
    }

    def all_wanted() -> dict[tuple[str, str], dict[str, Any]] | None:
        found = tasks_by_state(base)
        return found if wanted <= set(found) else None

    seen = wait_for(all_wanted, what=f"Flower to show {wanted}")
    assert eval_args(seen[("llm.summarize", "SUCCESS")]) == ["default", "a"]
    assert eval_args(seen[("llm.summarize", "RETRY")]) == ["default", "b"]
    assert eval_args(seen[("persist.flush", "SUCCESS")]) == []
    assert seen[("persist.flush", "SUCCESS")]["routing_key"] == "persist"
    assert seen[("llm.summarize", "SUCCESS")]["routing_key"] == "llm"
    assert seen[("llm.summarize", "RETRY")]["worker"].startswith("flowertest@")

    # No message content anywhere Flower shows a task: the API, the table, a task's page.
    status, everything = get(f"{base}/api/tasks")
    assert status == 200 and CONTENT_MARK.encode() not in everything
    status, table = get(
        f"{base}/tasks/datatable?draw=1&start=0&length=100&search%5Bvalue%5D="
        "&order%5B0%5D%5Bcolumn%5D=0&columns%5B0%5D%5Bdata%5D=name&order%5B0%5D%5Bdir%5D=asc"
    )
    rows = json.loads(table)["data"]
    assert status == 200 and CONTENT_MARK.encode() not in table
    assert {"persist.flush", "llm.summarize"} <= {row["name"] for row in rows}
    status, page = get(f"{base}/tasks")
    assert status == 200
    for column in ("Name", "State", "args", "Routing Key", "Retries", "Worker"):
        assert column.encode() in page, column
    retried = seen[("llm.summarize", "RETRY")]["uuid"]
    status, task_page = get(f"{base}/task/{retried}")
    text = task_page.decode()
    assert status == 200 and "llm.summarize" in text and "RETRY" in text
    assert CONTENT_MARK not in text

    # The retry queue's worker takes the retried summarize: the same task ends in SUCCESS.
    spawn(
        processes.worker_command(queues=["llm.retry"], concurrency=1, name="flowerretry"),
        settings=settings,
        name="retry-worker",
    )
    wait_for(lambda: client.memory_stats("b").summary_count == 1, what="session b's summary")
    final = wait_for(
        lambda: (
            (task := json.loads(get(f"{base}/api/task/info/{retried}")[1]))["state"] == "SUCCESS"
            and task
        ),
        what="the retried summarize to succeed",
    )
    assert (final["retries"], final["routing_key"]) == (1, "llm.retry")
    assert final["worker"].startswith("flowerretry@")
    assert len(fake_openai.requests()) == 3  # a, b rate limited, b again: nothing lost

    for path in ("/api/workers", "/api/tasks", "/tasks", f"/task/{retried}"):
        assert get(f"{base}{path}", auth=None)[0] == 401, path
        assert get(f"{base}{path}", auth=(USER, "wrong"))[0] == 401, path
    client.engine.dispose()


def eval_args(task: dict[str, Any]) -> list[Any]:
    """A task's args as Flower shows them (the repr of a list or tuple of literals)."""
    return list(ast.literal_eval(str(task["args"])))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({}, "MEMSCRIBE_FLOWER_PASSWORD"),
        ({"flower_password": "a,b"}, "must not contain a comma"),
    ],
)
def test_flower_refuses_to_start_without_a_usable_password(
    make_settings: SettingsFactory, overrides: dict[str, Any], message: str, tmp_path: Path
) -> None:
    """Without a password (or with one Flower cannot parse) ``memscribe flower`` exits 2 and
    names the setting; no Flower starts."""
    settings = make_settings(flower_port=free_port(), **overrides)
    process = processes.start(
        processes.memscribe_command("flower"),
        env=settings_env(settings),
        log_path=tmp_path / "flower.log",
    )
    try:
        assert process.wait(timeout=60) == 2
    finally:
        processes.stop(process)
    assert message in " ".join((tmp_path / "flower.log").read_text().split())


def test_flower_without_auth_only_when_disabled_explicitly(
    make_settings: SettingsFactory, spawn: Spawn, tmp_path: Path
) -> None:
    """MEMSCRIBE_FLOWER_AUTH=false starts Flower open, with a warning in its log."""
    settings = make_settings(flower_port=free_port(), flower_auth=False)
    spawn(processes.memscribe_command("flower"), settings=settings, name="flower")
    base = f"http://127.0.0.1:{settings.flower_port}"
    wait_for(lambda: get(f"{base}/healthcheck", auth=None)[0] == 200, what="Flower to listen")
    assert get(f"{base}/tasks", auth=None)[0] == 200
    assert listening_addresses(settings.flower_port) == {"127.0.0.1"}
    assert "WITHOUT authentication" in (tmp_path / "flower.log").read_text()
