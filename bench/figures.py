"""What a section reports: ``Figure``s, each a median of repetitions with its min and max."""

from __future__ import annotations

import math
import operator
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


@dataclass(frozen=True)
class Target:
    """A promise the median must keep, e.g. ``Target("<=", 1.6)``."""

    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in _COMPARISONS:
            raise ValueError(f"unknown comparison {self.op!r}")

    def met_by(self, value: float) -> bool:
        return _COMPARISONS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass(frozen=True)
class Figure:
    """One number of the benchmark: the median of ``repetitions`` runs, with min and max.

    ``anchor`` names the figure a ratio is taken against (ratios are computed per repetition,
    from figures measured in that same repetition, then summarized like any other figure).
    """

    name: str
    label: str
    unit: str
    median: float
    min: float
    max: float
    repetitions: int
    samples: tuple[float, ...] = ()
    anchor: str | None = None
    target: Target | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met_by(self.median)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "repetitions": self.repetitions,
            "samples": list(self.samples),
        }
        if self.anchor is not None:
            data["anchor"] = self.anchor
        if self.target is not None:
            data["target"] = str(self.target)
            data["met"] = self.met
        if self.note:
            data["note"] = self.note
        return data


def summarize(
    name: str,
    label: str,
    unit: str,
    samples: Sequence[float],
    *,
    anchor: str | None = None,
    target: Target | None = None,
    note: str = "",
) -> Figure:
    """A figure from one value per repetition."""
    if not samples:
        raise ValueError(f"{name}: no samples")
    samples = [float(value) for value in samples]  # PostgreSQL hands back Decimals
    return Figure(
        name=name,
        label=label,
        unit=unit,
        median=statistics.median(samples),
        min=min(samples),
        max=max(samples),
        repetitions=len(samples),
        samples=tuple(samples),
        anchor=anchor,
        target=target,
        note=note,
    )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


@dataclass
class Samples:
    """Per-repetition values of many figures, collected as a section runs."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def __getitem__(self, name: str) -> list[float]:
        return self.values[name]

    def ratio(self, numerator: str, denominator: str) -> list[float]:
        """Per repetition: ``numerator / denominator``, both measured in that repetition."""
        return [a / b for a, b in zip(self[numerator], self[denominator], strict=True)]
