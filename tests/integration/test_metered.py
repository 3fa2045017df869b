"""The metered drainer and budgets count what they do (in-process registry, real stores)."""

from __future__ import annotations

import time

import pytest
import redis
from prometheus_client import REGISTRY

from config.settings import Settings
from core.client import MemoryClient
from core.observability.instruments import MeteredBudgets, MeteredDrainer
from core.store.keys import Keys
from tests.conftest import SettingsFactory


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_budgets_count_tokens_and_cost_per_tenant(
    make_settings: SettingsFactory, pg_database: str, redis_client: redis.Redis
) -> None:
    """A paid call adds its tokens and its priced cost to the tenant's series, and to Redis."""
    settings = make_settings(
        database_url=pg_database,
        llm_prompt_usd_per_1k_tokens=0.5,
        llm_completion_usd_per_1k_tokens=2.0,
    )
    budgets = MeteredBudgets(redis_client, Keys.of(settings), settings)
    prompt = sample("memscribe_llm_tokens_total", tenant="acme", kind="prompt")
    completion = sample("memscribe_llm_tokens_total", tenant="acme", kind="completion")
    cost = sample("memscribe_llm_cost_usd_total", tenant="acme")
    calls = sample("memscribe_llm_calls_total", tenant="acme")
    budgets.record("acme", prompt_tokens=1000, completion_tokens=500, now_s=time.time())
    assert sample("memscribe_llm_tokens_total", tenant="acme", kind="prompt") - prompt == 1000
    assert (
        sample("memscribe_llm_tokens_total", tenant="acme", kind="completion") - completion == 500
    )
    assert sample("memscribe_llm_cost_usd_total", tenant="acme") - cost == pytest.approx(1.5)
    assert sample("memscribe_llm_calls_total", tenant="acme") - calls == 1
    usage = budgets.usage("acme")
    assert (usage.calls, usage.prompt_tokens, usage.completion_tokens) == (1, 1000, 500)


def test_drainer_counts_batches_and_persisted_entries(
    client: MemoryClient, settings: Settings
) -> None:
    """Each drained batch is observed: its size summed equals the persisted count."""
    for i in range(300):
        client.append(f"s-{i % 7}", "user", f"m{i}")
    batches = sample("memscribe_drain_batch_size_count")
    entries = sample("memscribe_drain_batch_size_sum")
    persisted = sample("memscribe_drained_messages_total", outcome="persisted")
    timed = sample("memscribe_drain_batch_duration_seconds_count")
    drainer = MeteredDrainer(redis=client.redis, engine=client.engine, settings=settings)
    report = drainer.drain_all(budget_s=30)
    assert report.persisted == 300
    assert sample("memscribe_drained_messages_total", outcome="persisted") - persisted == 300
    assert sample("memscribe_drain_batch_size_sum") - entries == 300
    assert sample("memscribe_drain_batch_size_count") - batches == report.batches
    assert sample("memscribe_drain_batch_duration_seconds_count") - timed == report.batches
