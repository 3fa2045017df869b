"""The core objects workers use, with metrics: a drainer that times its batches, budgets that
count tokens and cost per tenant. Subclasses, so core/log and core/summaries stay unaware of
Prometheus and every other user of them (the CLI, tests) is unchanged."""

from __future__ import annotations

import time

import redis

from config.settings import Settings
from core.log.drainer import Drainer
from core.log.report import DrainReport, Entry
from core.observability.metrics import worker_metrics
from core.store.keys import Keys
from core.summaries.budget import Budgets
from core.summaries.summarizer import SessionSummarizer


class MeteredDrainer(Drainer):
    """A ``Drainer`` that records each batch: its size, its duration and how it settled."""

    def process(self, shard: int, entries: list[Entry]) -> DrainReport:
        started = time.perf_counter()
        report = super().process(shard, entries)
        metrics = worker_metrics()
        metrics.batch_duration.observe(time.perf_counter() - started)
        metrics.batch_size.observe(len(entries))
        for outcome, count in (
            ("persisted", report.persisted),
            ("skipped", report.skipped),
            ("dead_lettered", report.dead_lettered),
        ):
            if count:
                metrics.drained.labels(outcome=outcome).inc(count)
        return report


class MeteredBudgets(Budgets):
    """``Budgets`` that also count each paid call's tokens and cost, per tenant."""

    def __init__(self, client: redis.Redis, keys: Keys, settings: Settings) -> None:
        super().__init__(client, keys, settings)
        self._prompt_usd = settings.llm_prompt_usd_per_1k_tokens / 1000
        self._completion_usd = settings.llm_completion_usd_per_1k_tokens / 1000

    def record(
        self, tenant: str, *, prompt_tokens: int, completion_tokens: int, now_s: float
    ) -> None:
        super().record(
            tenant, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, now_s=now_s
        )
        metrics = worker_metrics()
        metrics.llm_calls.labels(tenant=tenant).inc()
        metrics.llm_tokens.labels(tenant=tenant, kind="prompt").inc(prompt_tokens)
        metrics.llm_tokens.labels(tenant=tenant, kind="completion").inc(completion_tokens)
        cost = prompt_tokens * self._prompt_usd + completion_tokens * self._completion_usd
        metrics.llm_cost.labels(tenant=tenant).inc(cost)


def meter_summarizer(summarizer: SessionSummarizer) -> SessionSummarizer:
    """The same summarizer, its budgets swapped for metered ones (same Redis keys)."""
    summarizer.budgets = MeteredBudgets(summarizer.redis, summarizer.keys, summarizer.settings)
    return summarizer
