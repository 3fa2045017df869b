"""The metrics memscribe's processes record, created once per process on first use.

Labels are bounded sets only: a task name and queue, a shard, an outcome, a tenant. Never a
session, subject or message id, and never a hostname or pid: a worker restart must not add a
series (celery-exporter and Flower label by worker, so their series grow with churn; here
multiprocess mode sums every process's samples into one series per label set).

The Celery task counters keep celery-exporter's names (``celery_task_sent_total`` ...), so its
dashboards and alerts work unchanged, minus its ``hostname`` label.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from prometheus_client import Counter, Gauge, Histogram

TASK_LABELS = ("name", "queue")
DRAIN_OUTCOMES = ("persisted", "skipped", "dead_lettered")
# Seconds: a flush pass takes milliseconds, a backup hours.
RUNTIME_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10_000)
BATCH_DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class WorkerMetrics:
    task_sent: Counter
    task_received: Counter
    task_started: Counter
    task_succeeded: Counter
    task_failed: Counter
    task_retried: Counter
    task_runtime: Histogram
    drained: Counter
    batch_size: Histogram
    batch_duration: Histogram
    summaries: Counter
    llm_calls: Counter
    llm_tokens: Counter
    llm_cost: Counter
    maintenance_runs: Counter
    maintenance_last_success: Gauge


@lru_cache(maxsize=1)
def worker_metrics() -> WorkerMetrics:
    """This process's metrics (registered once in the default registry)."""

    def task_counter(event: str, what: str) -> Counter:
        return Counter(
            f"celery_task_{event}", f"Tasks {what} (celery-exporter's name)", TASK_LABELS
        )

    metrics = WorkerMetrics(
        task_sent=task_counter("sent", "published"),
        task_received=task_counter("received", "received by a worker"),
        task_started=task_counter("started", "started"),
        task_succeeded=task_counter("succeeded", "succeeded"),
        task_failed=task_counter("failed", "failed"),
        task_retried=task_counter("retried", "retried"),
        task_runtime=Histogram(
            "celery_task_runtime",
            "Task run time in seconds (celery-exporter's name)",
            TASK_LABELS,
            buckets=RUNTIME_BUCKETS_S,
        ),
        drained=Counter(
            "memscribe_drained_messages",
            "WAL entries a drain settled, by outcome (persisted, skipped: already stored, "
            "dead_lettered)",
            ("outcome",),
        ),
        batch_size=Histogram(
            "memscribe_drain_batch_size",
            "WAL entries per drained batch",
            buckets=BATCH_SIZE_BUCKETS,
        ),
        batch_duration=Histogram(
            "memscribe_drain_batch_duration_seconds",
            "Seconds to persist and acknowledge one batch",
            buckets=BATCH_DURATION_BUCKETS_S,
        ),
        summaries=Counter(
            "memscribe_summaries", "llm.summarize runs by outcome status", ("status",)
        ),
        llm_calls=Counter("memscribe_llm_calls", "Paid LLM calls per tenant", ("tenant",)),
        llm_tokens=Counter(
            "memscribe_llm_tokens",
            "LLM tokens per tenant and kind (prompt, completion)",
            ("tenant", "kind"),
        ),
        llm_cost=Counter(
            "memscribe_llm_cost_usd",
            "LLM cost per tenant in USD (MEMSCRIBE_LLM_*_USD_PER_1K_TOKENS)",
            ("tenant",),
        ),
        maintenance_runs=Counter(
            "memscribe_maintenance_runs",
            "purge, erasure and backup runs by outcome (ran, skipped, failed)",
            ("job", "outcome"),
        ),
        # 'max': the newest success of any process, alive or not, and no pid label.
        maintenance_last_success=Gauge(
            "memscribe_maintenance_last_success_timestamp_seconds",
            "Unix time of the newest successful purge, erasure or backup run",
            ("job",),
            multiprocess_mode="max",
        ),
    )
    # Every outcome from the start: a first replay must not look like a new series.
    for outcome in DRAIN_OUTCOMES:
        metrics.drained.labels(outcome=outcome)
    return metrics


# Every series family /metrics serves (the Grafana dashboard test checks its queries against
# these). Counters are exposed with "_total", histograms with "_bucket", "_sum", "_count".
COUNTERS = (
    "celery_task_sent",
    "celery_task_received",
    "celery_task_started",
    "celery_task_succeeded",
    "celery_task_failed",
    "celery_task_retried",
    "memscribe_drained_messages",
    "memscribe_summaries",
    "memscribe_llm_calls",
    "memscribe_llm_tokens",
    "memscribe_llm_cost_usd",
    "memscribe_maintenance_runs",
)
HISTOGRAMS = (
    "celery_task_runtime",
    "memscribe_drain_batch_size",
    "memscribe_drain_batch_duration_seconds",
)
GAUGES = ("memscribe_maintenance_last_success_timestamp_seconds",)


def exported_names(live: tuple[str, ...]) -> set[str]:
    """Every sample name /metrics can serve, given the live collector's gauge names."""
    names = {f"{name}_total" for name in COUNTERS}
    names |= {f"{name}_{part}" for name in HISTOGRAMS for part in ("bucket", "sum", "count")}
    return names | set(GAUGES) | set(live)
