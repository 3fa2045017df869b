"""Near-duplicate detection for memories: normalization, exact-duplicate hashes, a lexical
similarity and deterministic clustering.

(Minimal version written for consolidation; the similarity module on main replaces it, with
the same names and signatures.)
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable
from typing import Protocol

# Punctuation at the edges of words (main's placeholder rule, so hashes agree with remember).
_EDGE = re.compile(r"(?<!\S)[^\w\s]+|[^\w\s]+(?!\S)")
_WORD = re.compile(r"\w+")


def normalize(text: str) -> str:
    """Case-folded NFKC text with whitespace collapsed and edge punctuation stripped."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_EDGE.sub("", folded).split())


def content_hash(text: str) -> str:
    """sha-256 (hex) of the normalized text: equal for exact duplicates."""
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()


def _shingles(text: str, size: int = 2) -> set[tuple[str, ...]]:
    words = _WORD.findall(normalize(text))
    if len(words) < size:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def lexical_similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' word shingles (pairs of words), 0..1."""
    left, right = _shingles(a), _shingles(b)
    if not left and not right:
        return 1.0
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def clusters(n: int, score: Callable[[int, int], float], threshold: float) -> list[list[int]]:
    """Groups (of two or more) of the indices 0..n-1 in which every pair scores at least
    ``threshold`` (complete linkage, agglomerative, deterministic: ties go to lower indices)."""
    pair: dict[tuple[int, int], float] = {}
    for i in range(n):
        for j in range(i + 1, n):
            pair[(i, j)] = score(i, j)
    groups: list[list[int]] = [[i] for i in range(n)]

    def linkage(a: list[int], b: list[int]) -> float:
        return min(pair[(min(x, y), max(x, y))] for x in a for y in b)

    while True:
        best: tuple[float, int, int] | None = None
        for gi in range(len(groups)):
            for gj in range(gi + 1, len(groups)):
                value = linkage(groups[gi], groups[gj])
                if value >= threshold and (best is None or value > best[0]):
                    best = (value, gi, gj)
        if best is None:
            break
        _, gi, gj = best
        groups[gi] = sorted(groups[gi] + groups[gj])
        del groups[gj]
    return sorted((group for group in groups if len(group) > 1), key=lambda group: group[0])


class Similarity(Protocol):
    name: str

    def score(self, a: str, b: str) -> float: ...


class LexicalSimilarity:
    """``lexical_similarity`` behind the ``Similarity`` interface."""

    name = "lexical"

    def score(self, a: str, b: str) -> float:
        return lexical_similarity(a, b)
