"""Shared fixtures: real Redis and real PostgreSQL (and SQLite files), flushed before each test.

Where they live (override with the environment):
- MEMSCRIBE_TEST_REDIS_URL     redis://127.0.0.1:6379/9 (the broker uses the next database)
- MEMSCRIBE_TEST_DATABASE_URL  postgresql+psycopg2://postgres@127.0.0.1:5432/memscribe_test
  (created, dropped and migrated by the tests; the server must accept CREATE DATABASE)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import redis
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
_SHARED_TIKTOKEN = ROOT.parent / "shared" / "tiktoken"
if _SHARED_TIKTOKEN.is_dir():
    # Offline machines: tiktoken reads its encoding files from here instead of downloading.
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(_SHARED_TIKTOKEN))

from config.settings import Settings, _with_db  # noqa: E402
from core.client import MemoryClient, redis_from_url  # noqa: E402
from core.crypto.cipher import message_aad  # noqa: E402
from core.crypto.vault import Vault, attach, open_contents, vault_of  # noqa: E402
from core.log.drainer import Drainer  # noqa: E402
from core.store.db import make_engine, migrate  # noqa: E402
from core.store.db import metadata as db_metadata  # noqa: E402
from worker import processes  # noqa: E402

REDIS_URL = os.environ.get("MEMSCRIBE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
PG_URL = os.environ.get(
    "MEMSCRIBE_TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/memscribe_test"
)


def broker_url_for(redis_url: str) -> str:
    """The next logical database on the same server keeps broker traffic apart from data."""
    return _with_db(redis_url, int(urlsplit(redis_url).path.lstrip("/") or 0) + 1)


BROKER_URL = broker_url_for(REDIS_URL)


def settings_env(settings: Settings) -> dict[str, str]:
    """The MEMSCRIBE_* environment that rebuilds ``settings`` in a subprocess."""
    env = {
        f"MEMSCRIBE_{name.upper()}": str(
            value.get_secret_value() if isinstance(value, SecretStr) else value
        )
        for name, value in settings.model_dump().items()
    }
    env["TIKTOKEN_CACHE_DIR"] = os.environ.get("TIKTOKEN_CACHE_DIR", "")
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture(scope="session")
def pg_url() -> str:
    """A fresh, migrated PostgreSQL database for this test run."""
    url = make_url(PG_URL)
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    migrate(PG_URL)
    return PG_URL


def _truncate(url: str) -> None:
    engine = make_engine(url)
    tables = ", ".join(table.name for table in db_metadata.sorted_tables)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text(f"TRUNCATE {tables}"))
        else:
            for table in db_metadata.sorted_tables:
                connection.execute(sa.text(f"DELETE FROM {table.name}"))
    engine.dispose()


@pytest.fixture
def pg_database(pg_url: str) -> str:
    """The PostgreSQL test database, emptied."""
    _truncate(pg_url)
    return pg_url


@pytest.fixture
def sqlite_database(tmp_path: Path) -> str:
    """A new, migrated SQLite file."""
    url = f"sqlite:///{tmp_path / 'memscribe.db'}"
    migrate(url)
    return url


BACKENDS = ("postgresql", "sqlite")
# Run a test on each durable backend: @both_backends
both_backends = pytest.mark.parametrize("database_url", BACKENDS, indirect=True)


@pytest.fixture
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty, migrated durable store: PostgreSQL unless parametrized with both_backends."""
    backend = getattr(request, "param", "postgresql")
    name = "pg_database" if backend == "postgresql" else "sqlite_database"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The test Redis database (and the broker's), flushed."""
    client = redis_from_url(REDIS_URL)
    client.flushdb()
    broker = redis_from_url(BROKER_URL)
    broker.flushdb()
    broker.close()
    yield client
    client.close()


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(pg_url: str) -> SettingsFactory:
    """Settings for the test stores; keyword arguments override any field."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "broker_url": BROKER_URL,
            "database_url": pg_url,
            "shards": 4,
            "drain_lease_ms": 1000,
            "flush_interval_s": 0.5,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: SettingsFactory, database_url: str) -> Settings:
    """Settings for the test stores (PostgreSQL unless parametrized)."""
    return make_settings(database_url=database_url)


@pytest.fixture
def client(redis_client: redis.Redis, settings: Settings) -> Iterator[MemoryClient]:
    memory = MemoryClient(redis=redis_client, settings=settings)
    yield memory
    if memory._engine is not None:
        memory._engine.dispose()


@pytest.fixture
def drainer(client: MemoryClient, settings: Settings) -> Drainer:
    return Drainer(redis=client.redis, engine=client.engine, settings=settings, consumer="test")


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start subprocesses (workers, beat, helpers) that are stopped after the test."""
    started: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], *, settings: Settings, name: str) -> subprocess.Popen[bytes]:
        process = processes.start(
            command, env=settings_env(settings), log_path=tmp_path / f"{name}.log"
        )
        started.append(process)
        return process

    yield start
    for process in started:
        processes.stop(process, timeout_s=10)


def messages_in_store(url: str) -> list[Row]:
    """Every message row, as (message_id, tenant, session_id, seq, content), content opened
    (a subject's messages are stored sealed; one whose key is destroyed reads as None)."""
    engine = make_engine(url)
    # Workers in subprocesses sealed with the settings' keys (the development ones unless
    # the test set others): a vault of this process's settings opens them.
    vault_of(engine) or attach(engine, Vault(Settings(database_url=url)))
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT message_id, tenant, session_id, seq, content, key_id FROM messages")
        ).all()
    opened = open_contents(
        engine, [(row.key_id, row.content, message_aad(*row[1:3], row[0])) for row in rows]
    )
    engine.dispose()
    return [
        Row(row.message_id, row.tenant, row.session_id, row.seq, content)
        for row, content in zip(rows, opened, strict=True)
    ]


class Row(NamedTuple):
    message_id: str
    tenant: str
    session_id: str
    seq: int
    content: str | None


def assert_exactly_once(url: str, appended: dict[str, tuple[str, str, int, str]]) -> None:
    """The set check: every appended id is stored once, with its session, seq and content;
    seq is 1..n without gaps per session."""
    rows = messages_in_store(url)
    stored_ids = [row.message_id for row in rows]
    lost = set(appended) - set(stored_ids)
    duplicated = len(stored_ids) - len(set(stored_ids))
    unexpected = set(stored_ids) - set(appended)
    assert (len(lost), duplicated, len(unexpected)) == (0, 0, 0), (
        f"lost={len(lost)} duplicated={duplicated} unexpected={len(unexpected)}"
    )
    by_session: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        tenant, session_id, seq, content = appended[row.message_id]
        assert (row.tenant, row.session_id, row.seq) == (tenant, session_id, seq)
        assert row.content == content
        by_session.setdefault((row.tenant, row.session_id), []).append(row.seq)
    for key, seqs in by_session.items():
        assert sorted(seqs) == list(range(1, len(seqs) + 1)), f"seq gap in {key}"


def assert_commit_order(url: str) -> int:
    """P2's "in seq order": within every session, the commit time (``persisted_at``) never
    decreases as seq grows. Returns the number of sessions checked."""
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT tenant, session_id, seq, persisted_at FROM messages "
                "ORDER BY tenant, session_id, seq"
            )
        ).all()
    engine.dispose()
    last: dict[tuple[str, str], Any] = {}
    for row in rows:
        key = (row.tenant, row.session_id)
        if key in last:
            assert row.persisted_at >= last[key], (
                f"{key}: seq {row.seq} committed at {row.persisted_at}, before an earlier seq "
                f"({last[key]})"
            )
        last[key] = row.persisted_at
    return len(last)


@pytest.fixture
def fake_openai() -> Iterator[Any]:
    """A local OpenAI-compatible server on a free port (tests/fakes/openai_server.py)."""
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI() as server:
        yield server
