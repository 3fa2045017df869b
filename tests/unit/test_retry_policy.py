"""Retry policies: full-jitter exponential backoff, caps, and the visibility-timeout rule."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest
from pydantic import ValidationError as SettingsError

from config.celery import QUEUES, celery_config, family_queues
from config.settings import Settings
from tasks.base import FAMILY_CAPS_S, RetryPolicy, policy


def test_countdown_grows_and_is_capped() -> None:
    """Full jitter: uniform below base*2**n; the mean doubles each retry until the cap."""
    random.seed(7)
    rule = RetryPolicy("llm", max_retries=10, base_s=0.01, cap_s=0.64)
    means = [statistics.mean(rule.countdown(n) for _ in range(4000)) for n in range(8)]
    for n, mean in enumerate(means):
        ceiling = min(0.64, 0.01 * 2**n)
        assert 0.45 * ceiling < mean < 0.55 * ceiling
    assert all(later > earlier for earlier, later in itertools.pairwise(means))
    assert max(rule.countdown(30) for _ in range(1000)) <= 0.64


def test_retry_after_is_a_floor() -> None:
    """A server's Retry-After is never undercut by the jitter."""
    rule = RetryPolicy("llm", max_retries=3, base_s=0.001, cap_s=1)
    assert min(rule.countdown(0, at_least_s=2.5) for _ in range(100)) == 2.5


def test_each_family_declares_its_policy_and_retry_queue() -> None:
    """Every family has a cap and a retry queue that the config declares and workers consume."""
    settings = Settings()
    for family in FAMILY_CAPS_S:
        rule = policy(family, settings)
        assert rule.retry_queue == f"{family}.retry"
        assert rule.retry_queue in QUEUES
        assert family_queues(family) == [family, rule.retry_queue]
        assert rule.cap_s <= settings.retry_cap_s


def test_visibility_timeout_outlasts_the_longest_countdown() -> None:
    """kombu would re-deliver a task waiting out a longer countdown: refused at start-up."""
    settings = Settings()
    config = celery_config(settings)
    longest = max(policy(family, settings).cap_s for family in FAMILY_CAPS_S)
    assert config["broker_transport_options"]["visibility_timeout"] > longest
    with pytest.raises(SettingsError, match="visibility_timeout_s"):
        Settings(retry_cap_s=4000, visibility_timeout_s=3600)
