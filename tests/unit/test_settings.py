"""Settings from the environment, and the Celery configuration derived from them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError as SettingsError

from config.celery import QUEUES, celery_config
from config.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented defaults hold with an empty environment."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"MEMSCRIBE_{name.upper()}", raising=False)
    settings = Settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.broker_url == "redis://localhost:6379/1"
    assert settings.database_url == "sqlite:///./var/memscribe.db"
    assert (settings.shards, settings.buffer_max_messages, settings.key_prefix) == (16, 30, "ms")
    assert settings.batch_size > 0


def test_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """MEMSCRIBE_* variables set the fields; the broker follows the Redis URL."""
    monkeypatch.setenv("MEMSCRIBE_REDIS_URL", "redis://cache.internal:6380/4")
    monkeypatch.setenv("MEMSCRIBE_SHARDS", "64")
    monkeypatch.delenv("MEMSCRIBE_BROKER_URL", raising=False)
    settings = Settings()
    assert settings.shards == 64
    assert settings.broker_url == "redis://cache.internal:6380/1"


def test_bad_settings_name_the_field() -> None:
    """An out-of-range setting fails at start-up, naming it."""
    with pytest.raises(SettingsError, match="shards"):
        Settings(shards=0)
    with pytest.raises(SettingsError, match="key_prefix"):
        Settings(key_prefix="has:colon")


def test_celery_config_is_safe() -> None:
    """JSON only, late acks, prefetch 1, events on, no result backend, no pickle anywhere."""
    config = celery_config(Settings())
    assert config["accept_content"] == ["json"]
    assert config["task_serializer"] == config["result_serializer"] == "json"
    assert config["task_acks_late"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_ignore_result"] is True
    assert config["worker_send_task_events"] and config["task_send_sent_event"]
    assert [queue.name for queue in config["task_queues"]] == list(QUEUES)
    # The default PersistentScheduler keeps its state in a shelve file, i.e. pickle; ours is
    # the in-memory one behind a leader lock (worker/leader.py).
    assert config["beat_scheduler"] == "worker.leader:LeaderScheduler"
    assert config["broker_transport_options"]["visibility_timeout"] >= config["task_time_limit"]


def test_routes_and_beat() -> None:
    """Each task family routes to its queue; beat flushes every second by default."""
    config = celery_config(Settings())
    assert config["task_routes"]["persist.*"] == {"queue": "persist"}
    assert config["task_routes"]["llm.*"] == {"queue": "llm"}
    assert config["task_routes"]["maintenance.*"] == {"queue": "maintenance"}
    flush = config["beat_schedule"]["persist-flush"]
    assert (flush["task"], flush["schedule"], flush["options"]["queue"]) == (
        "persist.flush",
        1.0,
        "persist",
    )


def test_worker_app_registers_flush() -> None:
    """The Celery app loads the tasks and the configuration."""
    from worker.app import app

    app.loader.import_default_modules()
    assert "persist.flush" in app.tasks
    assert app.conf.accept_content == ["json"]
