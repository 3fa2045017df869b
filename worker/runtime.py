"""Per-process clients for tasks: built lazily, rebuilt after a fork.

A Redis connection or SQLAlchemy pool inherited across ``fork`` would be shared by two
processes and corrupt both; ``worker.signals`` drops them in every new child.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import redis
from sqlalchemy import Engine

from config.settings import Settings, get_settings
from core.connections import redis_client
from core.db import make_engine
from core.keys import Keys
from core.wal import Drainer


@dataclass
class Runtime:
    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings, health_check_interval=30)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.settings.key_prefix, self.settings.shards)

    @cached_property
    def drainer(self) -> Drainer:
        return Drainer(redis=self.redis, engine=self.engine, settings=self.settings)


_current: Runtime | None = None


def runtime() -> Runtime:
    global _current
    if _current is None:
        _current = Runtime()
    return _current


def reset_runtime() -> None:
    """Forget the parent's clients (called in each new worker child)."""
    global _current
    _current = None
