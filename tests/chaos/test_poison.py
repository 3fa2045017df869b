"""Fault: 3 entries PostgreSQL rejects, among 10,000 good ones, through a real worker."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from config.settings import Settings
from core.client import MemoryClient
from core.log import deadletters
from tests.chaos.load import wait_until_durable
from tests.conftest import assert_exactly_once, messages_in_store
from tests.integration.test_cli import memscribe
from tests.integration.test_deadletters import POISON, lift
from worker import processes

GOOD = 10_000
POISONED_AT = {17, 5_000, 9_999}


def test_poison_is_dead_lettered_and_replayed_after_a_fix(
    redis_client: object,
    make_settings: Callable[..., Settings],
    pg_database: str,
    poison_rule: sa.Engine,
    spawn: Callable[..., object],
) -> None:
    """All good ones land, exactly those 3 are dead letters, replay after the fix lands them."""
    settings = make_settings(database_url=pg_database)
    client = MemoryClient(redis=redis_client, settings=settings)  # type: ignore[arg-type]
    written = {}
    for i in range(GOOD + len(POISONED_AT)):
        content = f"{POISON} {i}" if i in POISONED_AT else f"good {i}"
        session_id = f"s-{i % 250}"
        result = client.append(session_id, "user", content)
        written[result.message_id] = ("default", session_id, result.seq, content)
    poisoned = {mid for mid, row in written.items() if POISON in row[3]}

    spawn(
        processes.worker_command(["persist"], loglevel="WARNING"), settings=settings, name="worker"
    )
    spawn(processes.beat_command(loglevel="WARNING"), settings=settings, name="beat")
    assert wait_until_durable(client, timeout_s=120) == 0
    stored = {row.message_id for row in messages_in_store(pg_database)}
    assert stored == set(written) - poisoned and len(stored) == GOOD
    letters = deadletters.list_dead_letters(client.redis, client.keys)
    assert sorted(letter.detail["message_id"] for letter in letters) == sorted(poisoned)

    lift(poison_rule)
    result = memscribe(settings, "dlq", "replay", "--all")
    assert result.returncode == 0, result.stdout + result.stderr
    assert wait_until_durable(client, timeout_s=60) == 0
    assert_exactly_once(pg_database, written)
    assert deadletters.counts(client.redis, client.keys) == {"wal": 0, "task": 0}
    print(f"\npoison: written={len(written)} dead-lettered=3 replayed=3 lost=0 duplicated=0")
