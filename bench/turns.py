"""Timing variants in turns, so machine noise lands on all of them alike, and the figures a
variant gets against the PING measured beside it."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.figures import Figure, Samples, percentile, summarize

Call = Callable[[int], object]  # message number -> one request


def timed(call: Call, first: int, count: int, out: list[int]) -> None:
    """Run ``call`` for numbers ``first..first+count-1``, appending each time (ns) to ``out``."""
    clock = time.perf_counter_ns
    for i in range(first, first + count):
        began = clock()
        call(i)
        out.append(clock() - began)


def p50s_in_turns(calls: dict[str, Call], *, count: int, chunk: int = 1) -> dict[str, float]:
    """Each call ``count`` times, ``chunk`` calls a turn in the order given; p50 (us) each."""
    timings: dict[str, list[int]] = {key: [] for key in calls}
    for first in range(0, count, chunk):
        for key, call in calls.items():
            timed(call, first, min(chunk, count - first), timings[key])
    return {key: percentile(sorted(values), 50.0) / 1000 for key, values in timings.items()}


def against_ping(prefix: str, labels: dict[str, str], samples: Samples) -> list[Figure]:
    """PING's p50, then each labelled variant's p50 and its ratio to PING (``<key>.p50``
    samples; ``labels["ping"]`` names PING)."""
    figures = [summarize(f"{prefix}.ping.p50", labels["ping"], "us", samples["ping.p50"])]
    for key, label in labels.items():
        if key == "ping":
            continue
        figures.append(
            summarize(f"{prefix}.{key}.p50", f"{label}: p50", "us", samples[f"{key}.p50"])
        )
        figures.append(
            summarize(
                f"{prefix}.{key}.p50_vs_ping",
                f"{label}: p50 / PING p50",
                "x",
                samples.ratio(f"{key}.p50", "ping.p50"),
                anchor=f"{prefix}.ping.p50",
            )
        )
    return figures
