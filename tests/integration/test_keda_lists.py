"""What the KEDA list triggers (docs/keda) count: a task sent to a family's queue waits in
the broker's Redis list of exactly the queue's name."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
import yaml

from config.settings import Settings
from core.client import redis_from_url
from tasks.llm import broker_enqueue
from tests.unit.test_keda import KEDA

SettingsFactory = Callable[..., Settings]


@pytest.mark.parametrize(
    ("family", "task"), [("llm", "llm.summarize"), ("maintenance", "maintenance.purge_expired")]
)
def test_a_waiting_task_is_in_the_list_keda_reads(
    make_settings: SettingsFactory, redis_client: redis.Redis, family: str, task: str
) -> None:
    """With no worker running, each task sent to the family's queue adds one to LLEN of the
    list the ScaledObject names, and to no other list."""
    settings = make_settings()
    document = yaml.safe_load((KEDA / f"{family}.yaml").read_text("utf-8"))
    fresh = document["spec"]["triggers"][0]["metadata"]["listName"]
    broker = redis_from_url(settings.broker_url)
    try:
        send = broker_enqueue(settings)
        for _ in range(3):
            send(task, [])
        assert broker.llen(fresh) == 3
        lists = [key for key in broker.scan_iter(count=100) if broker.type(key) == "list"]
        assert lists == [fresh]
    finally:
        broker.close()
