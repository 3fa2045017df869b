"""The KEDA ScaledObject examples (docs/keda) name the streams, consumer group and queue lists
memscribe really uses with the default settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.celery import FAMILIES, QUEUES, family_queues
from config.settings import Settings
from core.store.keys import CONSUMER_GROUP, Keys

KEDA = Path(__file__).resolve().parents[2] / "docs" / "keda"


def load(family: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((KEDA / f"{family}.yaml").read_text("utf-8"))
    return document


def database(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "0"


@pytest.fixture(scope="module")
def defaults() -> Settings:
    """The default settings (no MEMSCRIBE_* environment), as the examples assume."""
    return Settings()


def test_one_example_per_family() -> None:
    """docs/keda has exactly one ScaledObject per task family."""
    assert {path.stem for path in KEDA.glob("*.yaml")} == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_each_is_a_scaled_object_for_its_deployment(family: str) -> None:
    """keda.sh/v1alpha1 ScaledObject, scaling the family's Deployment within sane bounds."""
    document = load(family)
    assert (document["apiVersion"], document["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    target = document["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", f"memscribe-worker-{family}")
    spec = document["spec"]
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert spec["triggers"]


def test_persist_scales_on_the_lag_of_every_wal_shard(defaults: Settings) -> None:
    """One redis-streams trigger per WAL shard, on the persist consumer group's lag, in the
    data Redis."""
    keys = Keys.of(defaults)
    triggers = load("persist")["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    streams = [t["metadata"]["stream"] for t in triggers]
    assert streams == [keys.wal(shard) for shard in range(defaults.shards)]
    for trigger in triggers:
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == CONSUMER_GROUP
        assert int(metadata["lagCount"]) >= 1
        assert "pendingEntriesCount" not in metadata and "streamLength" not in metadata
        assert metadata["databaseIndex"] == database(defaults.redis_url)


@pytest.mark.parametrize("family", ["llm", "maintenance"])
def test_queue_families_scale_on_their_broker_lists(defaults: Settings, family: str) -> None:
    """redis list triggers on the family's queue and retry queue, in the broker's database."""
    triggers = load(family)["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis"}
    lists = [t["metadata"]["listName"] for t in triggers]
    assert lists == family_queues(family)
    assert set(lists) <= set(QUEUES)
    for trigger in triggers:
        assert int(trigger["metadata"]["listLength"]) >= 1
        assert trigger["metadata"]["databaseIndex"] == database(defaults.broker_url)
