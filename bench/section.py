"""The plug-in shape of a benchmark section: a key, a title, and ``run(ctx) -> figures``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.context import BenchContext
    from bench.figures import Figure


@dataclass(frozen=True)
class Section:
    """One promise's measurement. ``run`` measures every anchor in the same repetitions."""

    key: str
    title: str
    run: Callable[[BenchContext], list[Figure]]
    # What the reader needs to interpret the figures (method, what is and is not included).
    notes: str = ""
