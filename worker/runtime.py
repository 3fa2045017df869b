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
from core.crypto.vault import keyed_engine
from core.log.drainer import Drainer
from core.memories.consolidate import Consolidator
from core.observability.instruments import MeteredDrainer, meter_summarizer
from core.store.connections import redis_client
from core.store.keys import Keys
from core.store.tokens import token_counter
from core.summaries.llm import build_backend
from core.summaries.summarizer import SessionSummarizer


@dataclass
class Runtime:
    settings: Settings = field(default_factory=get_settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis_client(self.settings, health_check_interval=30)

    @cached_property
    def engine(self) -> Engine:
        return keyed_engine(self.settings)

    @cached_property
    def keys(self) -> Keys:
        return Keys.of(self.settings)

    @cached_property
    def drainer(self) -> Drainer:
        # Metered: batch sizes and durations, drained counts (core/observability).
        return MeteredDrainer(redis=self.redis, engine=self.engine, settings=self.settings)

    @cached_property
    def summarizer(self) -> SessionSummarizer:
        """This process's summarizer: these clients and the configured backend."""
        tokens = token_counter(self.settings.tokenizer, self.settings.model)
        summarizer = SessionSummarizer(
            redis=self.redis,
            engine=self.engine,
            settings=self.settings,
            backend=build_backend(self.settings, tokens),
            tokens=tokens,
        )
        return meter_summarizer(summarizer)  # LLM tokens and cost per tenant

    @cached_property
    def consolidator(self) -> Consolidator:
        """This process's memory consolidation: these clients, the configured merger."""
        return Consolidator(redis=self.redis, engine=self.engine, settings=self.settings)


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
