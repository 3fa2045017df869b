"""Retention settings: defaults, per-tenant overrides, clear errors, TTL clamping, beat."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.celery import beat_schedule
from config.settings import Settings
from core.retention.policy import KINDS, RetentionPolicy


def test_a_tenant_override_beats_the_default() -> None:
    """A tenant's own value wins for its kind; other kinds and tenants keep the default."""
    settings = Settings(retention_tenants={"acme": {"messages": 3600, "memories_low": 0}})
    policy = RetentionPolicy.of(settings)
    assert policy.seconds("acme", "messages") == 3600
    assert policy.seconds("acme", "summaries") == settings.retention_summaries_s
    assert policy.seconds("other", "messages") == settings.retention_messages_s
    assert policy.memory_kind(1) == "memories_low" and policy.memory_kind(4) == "memories_critical"


def test_overrides_are_read_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMSCRIBE_RETENTION_TENANTS is a JSON map tenant -> {kind: seconds}."""
    monkeypatch.setenv("MEMSCRIBE_RETENTION_TENANTS", '{"acme": {"messages": 86400}}')
    assert RetentionPolicy.of(Settings()).seconds("acme", "messages") == 86400


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"acme": {"mesages": 60}}, "retention_tenants['acme']: unknown kind 'mesages'"),
        (
            {"acme": {"messages": 5}},
            "retention_tenants['acme'].messages: must be 0 (keep forever) or 60..",
        ),
        ({"acme": {"messages": -1}}, "retention_tenants['acme'].messages: must be 0"),
        ({"a:b*": {"messages": 60}}, "retention_tenants['a:b*']: not a valid tenant id"),
    ],
)
def test_bad_overrides_name_the_field_and_the_limit(overrides: dict, message: str) -> None:  # type: ignore[type-arg]
    """Each bad override is refused at start-up with the field and the limit in the error."""
    with pytest.raises(ValidationError) as caught:
        Settings(retention_tenants=overrides)
    assert message in str(caught.value)


def test_a_bad_default_names_its_field() -> None:
    """A default under a minute (but not 0) is refused, naming MEMSCRIBE_RETENTION_*_S."""
    with pytest.raises(ValidationError, match="retention_state_s: must be 0"):
        Settings(retention_state_s=30)


def test_redis_ttls_are_clamped_to_the_shortest_retention() -> None:
    """A TTL longer than the tenant's retention of any kind it mirrors is cut to it; 0 means
    forever and never clamps."""
    policy = RetentionPolicy.of(
        Settings(retention_tenants={"a": {"messages": 120, "summaries": 0}})
    )
    assert policy.redis_ttl_s("a", 3600, "messages", "summaries") == 120
    assert policy.redis_ttl_s("b", 3600, "messages", "summaries") == 3600


def test_shared_dead_letters_take_the_shortest_tenant_retention() -> None:
    """The dead-letter streams are shared: the strictest tenant's value applies to all."""
    settings = Settings(retention_tenants={"a": {"dead_letters": 3600}, "b": {"dead_letters": 0}})
    assert RetentionPolicy.of(settings).shared_seconds("dead_letters") == 3600
    assert set(KINDS) >= {"messages", "usage", "dead_letters", "state"}


def test_the_purge_runs_on_beat_with_an_expiry() -> None:
    """beat sends maintenance.purge_expired every MEMSCRIBE_PURGE_INTERVAL_S, to the
    maintenance queue, and a tick nobody took before the next is dropped."""
    entry = beat_schedule(Settings(purge_interval_s=45))["maintenance-purge-expired"]
    assert entry["task"] == "maintenance.purge_expired"
    assert entry["schedule"] == 45
    assert entry["options"] == {"queue": "maintenance", "expires": 45}
