"""The Grafana dashboard in docs/grafana queries only metrics memscribe exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from core.observability.collector import LIVE_GAUGES
from core.observability.metrics import exported_names

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "memscribe.json"
# Metric names in PromQL: what our prefixes start (functions and labels never do).
METRIC = re.compile(r"\b((?:memscribe|celery)_[a-zA-Z0-9_]+)\b")


def _targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_queried_metric_is_exported() -> None:
    """Each metric a panel queries is a series /metrics serves."""
    exported = exported_names(tuple(LIVE_GAUGES))
    queried = {name for target in _targets() for name in METRIC.findall(target["expr"])}
    assert queried, "the dashboard queries nothing"
    assert queried <= exported, sorted(queried - exported)


def test_dashboard_has_the_documented_panels() -> None:
    """Backlog and lag, drain rate, batch p99, dead letters, LLM tenants, tasks, backup age."""
    exprs = " ".join(target["expr"] for target in _targets())
    for needed in (
        "memscribe_wal_backlog",
        "memscribe_wal_consumer_lag",
        "memscribe_drained_messages_total",
        "histogram_quantile(0.99, sum by (le) (rate(memscribe_drain_batch_duration_seconds_bucket",
        "memscribe_dead_letters",
        "memscribe_llm_tokens_total",
        "memscribe_llm_cost_usd_total",
        "celery_task_succeeded_total",
        "memscribe_backup_last_success_timestamp_seconds",
    ):
        assert needed in exprs, needed


def test_no_panel_groups_by_host_or_session() -> None:
    """Series stay bounded: no query needs a hostname, worker, session or subject label."""
    exprs = " ".join(target["expr"] for target in _targets())
    for label in ("hostname", "worker", "session", "subject", "pid"):
        assert label not in exprs, label
