"""The benchmark harness runs end to end in a tiny configuration and reports every figure in full.

It needs the real Redis and PostgreSQL, on stores of its own (never the test databases):
MEMSCRIBE_TEST_BENCH_REDIS_URL (default redis://127.0.0.1:6379/7; the brokers use database 8 and
11, or MEMSCRIBE_TEST_BENCH_BROKER_URL and MEMSCRIBE_TEST_BENCH_NAIVE_BROKER_URL) and the
PostgreSQL database ``memscribe_bench_test`` (or MEMSCRIBE_TEST_BENCH_DATABASE, a name holding
"bench"), so parallel checkouts can each run it on stores of their own. Speed is never asserted
here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from bench.figures import Target, percentile, summarize
from bench.sections import SECTIONS
from config.settings import _with_db

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("MEMSCRIBE_TEST_BENCH_REDIS_URL", "redis://127.0.0.1:6379/7")
PG_SERVER = urlsplit(
    os.environ.get(
        "MEMSCRIBE_TEST_DATABASE_URL",
        "postgresql+psycopg2://postgres@127.0.0.1:5432/memscribe_test",
    )
)
# This sections; later issues register more (all must report).
REQUIRED = {
    "append_latency",
    "append_cold",
    "network_hop",
    "redis_memory",
    "durable_throughput",
    "lag",
    "idle_cost",
}


def _bench_env() -> dict[str, str]:
    name = os.environ.get("MEMSCRIBE_TEST_BENCH_DATABASE", "memscribe_bench_test")
    database = PG_SERVER._replace(path=f"/{name}").geturl()
    return {
        **os.environ,
        "MEMSCRIBE_BENCH_REDIS_URL": REDIS_URL,
        "MEMSCRIBE_BENCH_BROKER_URL": os.environ.get(
            "MEMSCRIBE_TEST_BENCH_BROKER_URL", _with_db(REDIS_URL, 8)
        ),
        "MEMSCRIBE_BENCH_NAIVE_BROKER_URL": os.environ.get(
            "MEMSCRIBE_TEST_BENCH_NAIVE_BROKER_URL", _with_db(REDIS_URL, 11)
        ),
        "MEMSCRIBE_BENCH_DATABASE_URL": database,
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    # These databases belong to this test; like every test store they start empty (the bench
    # itself refuses a database holding keys it did not write).
    env = _bench_env()
    for name in (
        "MEMSCRIBE_BENCH_REDIS_URL",
        "MEMSCRIBE_BENCH_BROKER_URL",
        "MEMSCRIBE_BENCH_NAIVE_BROKER_URL",
    ):
        client = redis.Redis.from_url(env[name])
        client.flushdb()
        client.close()
    output = tmp_path_factory.mktemp("bench") / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text()), done.stdout


@pytest.mark.timeout(270)
def test_every_figure_has_median_min_max_unit_and_repetitions(
    tiny_run: tuple[dict[str, Any], str],
) -> None:
    """Every section reports, and every figure carries median, min, max, unit, repetitions."""
    report, _ = tiny_run
    sections = report["sections"]
    keys = {section["key"] for section in sections}
    assert keys == {section.key for section in SECTIONS} and keys >= REQUIRED
    names = {figure["name"] for section in sections for figure in section["figures"]}
    for section in sections:
        assert section["figures"], section["key"]
        for figure in section["figures"]:
            assert figure["unit"], figure["name"]
            assert figure["repetitions"] == len(figure["samples"]) >= 2, figure["name"]
            assert figure["min"] <= figure["median"] <= figure["max"], figure["name"]
            if "anchor" in figure:
                assert figure["anchor"] in names, figure["name"]


@pytest.mark.timeout(270)
def test_report_names_the_machine_and_the_promises(
    tiny_run: tuple[dict[str, Any], str],
) -> None:
    """The JSON records cores and store versions; P1, P3 and P4 appear as targets."""
    report, stdout = tiny_run
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["redis"]["version"] and machine["postgresql"]["version"]
    targets = {target["figure"] for target in report["targets"]}
    assert {
        "append.memscribe.p50_vs_ping",
        "throughput.memscribe_vs_naive",
        "throughput.memscribe_vs_floor",
    } <= targets
    assert "| figure | median | min | max | unit | reps | target |" in stdout


def test_summarize_takes_median_min_max_of_repetitions() -> None:
    """A figure is the median of its samples, with their min and max."""
    figure = summarize("x", "x", "ms", [3.0, 1.0, 2.0], target=Target("<", 2.5))
    assert (figure.median, figure.min, figure.max, figure.repetitions) == (2.0, 1.0, 3.0, 3)
    assert figure.met is True


def test_percentile_interpolates_between_ranks() -> None:
    """Percentiles of sorted values interpolate linearly between neighbours."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99.9) == pytest.approx(99.901)
    assert percentile([7.0], 99) == 7.0
