"""How ``recall`` orders a subject's live memories: relevance to the query, priority, recency.

Relevance is the cosine of embeddings when both the query and the memory have one, otherwise
a lexical score (BM25 over the subject's memories, words normalized and lightly stemmed).
Priority and recency break ties and order a recall without a query. Memories past their decay
(``records.effective_ttl_s`` since their last recall) are never returned.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from config.settings import Settings
from core.memories.records import ViewEntry, effective_ttl_s
from core.memories.similarity import STOPWORDS, cosine, stem
from core.models import Memory, Priority

_WORD = re.compile(r"\w+")
RELEVANCE_WEIGHT = 0.7
PRIORITY_WEIGHT = 0.2
RECENCY_WEIGHT = 0.1
RECENCY_HALF_LIFE_S = 30 * 24 * 3600
_BM25_K1 = 1.2
_BM25_B = 0.75


@lru_cache(maxsize=65_536)
def terms(text: str) -> tuple[str, ...]:
    """The words of ``text`` that carry meaning, casefolded and lightly stemmed (the same
    stop words and stemmer as near-duplicate detection)."""
    return tuple(stem(word) for word in _WORD.findall(text.casefold()) if word not in STOPWORDS)


@dataclass(frozen=True, slots=True)
class Candidate:
    entry: ViewEntry
    last_ms: int  # last recall, or creation
    accessed_ms: int  # last recall (0: never)


def live_candidates(
    entries: Sequence[ViewEntry],
    accessed: Mapping[str, str],
    *,
    settings: Settings,
    now_ms: int,
    tags: frozenset[str] | None,
    min_priority: Priority | None,
) -> list[Candidate]:
    """The entries recall may return: not decayed, with every tag asked for, at the
    priority asked for or above."""
    found = []
    for entry in entries:
        if min_priority is not None and entry.priority < min_priority:
            continue
        if tags and not tags.issubset(entry.record.get("tags") or ()):
            continue
        record = entry.record
        accessed_ms = max(int(accessed.get(entry.memory_id) or 0), int(record.get("la") or 0))
        last_ms = max(accessed_ms, int(record["ts"]) // 1000)
        decay = effective_ttl_s(settings, entry.priority, entry.pinned, record.get("ttl"))
        if decay and now_ms > last_ms + decay * 1000:
            continue
        found.append(Candidate(entry, last_ms, accessed_ms))
    return found


@lru_cache(maxsize=131_072)
def _document(entry: ViewEntry) -> tuple[Counter[str], int]:
    """A memory's terms (content and tags) counted, and how many there are."""
    words = terms(entry.record["c"] + " " + " ".join(entry.record.get("tags") or ()))
    return Counter(words), len(words)


def _lexical(query: str, candidates: Sequence[Candidate]) -> list[float]:
    wanted = set(terms(query))
    if not wanted or not candidates:
        return [0.0] * len(candidates)
    documents = [_document(c.entry) for c in candidates]
    average = sum(length for _, length in documents) / len(documents) or 1.0
    size = len(documents)
    idf = {}
    for word in wanted:
        holding = sum(1 for counts, _ in documents if word in counts)
        if holding:
            idf[word] = math.log(1 + (size - holding + 0.5) / (holding + 0.5))
    scores = []
    for counts, length in documents:
        norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * length / average)
        score = 0.0
        for word, weight in idf.items():
            n = counts.get(word)
            if n:
                score += weight * n * (_BM25_K1 + 1) / (n + norm)
        scores.append(score)
    best = max(scores)
    return [score / best if best else 0.0 for score in scores]


def rank(
    candidates: Sequence[Candidate],
    *,
    query: str | None,
    now_ms: int,
    k: int,
    query_vector: Sequence[float] | None = None,
    vectors: Mapping[str, Sequence[float]] | None = None,
) -> list[Memory]:
    """The ``k`` best candidates, best first, as ``Memory`` objects with their scores."""
    relevance = _lexical(query, candidates) if query else [0.0] * len(candidates)
    if query_vector is not None and vectors:
        for index, candidate in enumerate(candidates):
            vector = vectors.get(candidate.entry.memory_id)
            if vector is not None:
                relevance[index] = max(0.0, cosine(query_vector, vector))
    scored = []
    for candidate, relevant in zip(candidates, relevance, strict=True):
        age_s = max(0, now_ms - candidate.last_ms) / 1000
        recency = 0.5 ** (age_s / RECENCY_HALF_LIFE_S)
        priority = (int(candidate.entry.priority) - 1) / 3
        score = RELEVANCE_WEIGHT * relevant + PRIORITY_WEIGHT * priority
        score += RECENCY_WEIGHT * recency
        scored.append((score, candidate))
    # Ties: the newer memory first, then the id (a stable order for equal memories).
    scored.sort(key=lambda item: (-item[0], -item[1].last_ms, item[1].entry.memory_id))
    return [
        candidate.entry.to_memory(last_accessed_ms=candidate.accessed_ms, score=round(score, 6))
        for score, candidate in scored[:k]
    ]
