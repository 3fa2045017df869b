"""Embeddings for near-duplicate detection (stub: the embeddings module on main replaces it).

Only the names consolidation relies on: the ``Embedder`` protocol, ``cosine`` and
``embedder_from_settings``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

from config.settings import Settings
from core.errors import ConfigurationError


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def embedder_from_settings(settings: Settings) -> Embedder | None:
    """The configured embedder, or None (``MEMSCRIBE_EMBEDDINGS=none``: lexical similarity)."""
    if settings.embeddings == "none":
        return None
    raise ConfigurationError(
        f"MEMSCRIBE_EMBEDDINGS={settings.embeddings} needs core/memories/embeddings.py from main"
    )
