"""Which memories say the same thing: exact duplicates, near-duplicates, and their groups.

- **Exact duplicates** have equal ``content_hash``: the SHA-256 of ``normalize(text)``
  (NFKC, casefold, collapsed whitespace, punctuation stripped at the edges of words), so
  "I like Tea." and "i  like tea" are one memory.
- **Near-duplicates** score at or above a threshold under one ``Similarity``:
  ``LexicalSimilarity`` (the default; local, no model, no network) or
  ``EmbeddingSimilarity`` (cosine of vectors from an ``Embedder``, core/memories/embeddings.py).
- **Groups** come from ``clusters``: complete linkage, so *every* two members of a group score
  at or above the threshold. Single linkage would glue A and C through B (A~B, B~C) even when
  A and C are different facts; a consolidation that merges a group must never do that.

The lexical score is a Jaccard similarity over word stems and their character 3-grams, with
stopwords dropped, scaled down when the two texts disagree on a number or on negation (the
two edits that most often turn one fact into another: "3 cats" / "4 cats", "is" / "is not").
It finds reworded facts; it cannot know that "teetotal" means "doesn't drink alcohol". The
thresholds in settings were chosen on bench/data/memory_pairs.jsonl (docs/memory-similarity.md).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

LEXICAL_NAME = "local-lexical"
# How much a disagreement on negation or on numbers scales the lexical score (both may apply).
NEGATION_FACTOR = 0.5
NUMBER_FACTOR = 0.5

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+")
_THOUSANDS = re.compile(r"(?<=\d)[,_](?=\d{3}\b)")
_NOT = re.compile(r"n['\u2019]t\b")
_DIGITS = re.compile(r"\d+")

# Function words carry no fact. Kept on purpose: negations; the words that flip a direction
# or a degree (over, under, before, after, from, least, most, only: "flight from Lisbon" is
# not "flight to Lisbon"; "to" itself is too common to tell); and third-person pronouns
# ("pronouns are they/them" is not "she/her").
_STOPWORDS = """a an the is are was were be been being am of to in on at for by with as and or but
    that this these those it its i me my you your we our us user users s do does did doing
    has have had having will would should shall can could may might must just also very than
    then there here about into so such which who whom whose what when where how one's
    oneself themselves himself herself itself"""
STOPWORDS = frozenset(_STOPWORDS.split())
NEGATIONS = frozenset({"not", "no", "never", "without", "none", "nothing", "neither", "nor"})
_UNIT_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty"
)
_UNITS = _UNIT_WORDS.split()
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80}
NUMBER_WORDS = {word: n for n, word in enumerate(_UNITS)} | _TENS | {"ninety": 90}
_SUFFIXES = ("ies", "sses", "es", "s", "ing", "ed", "ly")
_COMPOUND = re.compile(
    rf"\b({'|'.join([*_TENS, 'twenty', 'ninety'])})-({'|'.join(_UNITS[1:10])})\b"
)
_NUMBER_WORD = re.compile(rf"\b({'|'.join(NUMBER_WORDS)})\b")


def _strip_edges(word: str) -> str:
    start, end = 0, len(word)
    while start < end and unicodedata.category(word[start]).startswith("P"):
        start += 1
    while end > start and unicodedata.category(word[end - 1]).startswith("P"):
        end -= 1
    return word[start:end]


def normalize(text: str) -> str:
    """The canonical form two exact duplicates share: Unicode NFKC, casefolded, whitespace
    collapsed to single spaces, punctuation stripped at the edges of each word (inside a word,
    as in "don't", "8:15" or "they/them", it stays)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = (_strip_edges(word) for word in _SPACE.split(folded))
    return " ".join(word for word in words if word)


def content_hash(text: str) -> str:
    """SHA-256 (hex) of ``normalize(text)``: equal hashes are exact duplicates."""
    return hashlib.sha256(normalize(text).encode()).hexdigest()


def stem(word: str) -> str:
    """A light suffix stripper (plurals, -ing, -ed, -ly, a final e): "nursing" and "nurse"
    meet at "nurs", "cats" at "cat". Short words and numbers are left alone."""
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "ies":
                word = word[:-3] + "y"
            elif suffix == "sses":
                word = word[:-2]
            elif suffix == "s" and word.endswith(("ss", "us", "is")):
                continue
            else:
                word = word[: -len(suffix)]
            break
    if len(word) > 4 and word.endswith("e"):
        word = word[:-1]
    return word


def _spell_numbers(text: str) -> str:
    """Number words as digits: "thirty-four" and "34" are one number, "seven" is "7"."""

    def compound(match: re.Match[str]) -> str:
        return str(NUMBER_WORDS[match[1]] + NUMBER_WORDS[match[2]])

    text = _COMPOUND.sub(compound, text)
    return _NUMBER_WORD.sub(lambda match: str(NUMBER_WORDS[match[0]]), text)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the lexical score compares: features (stems and their character 3-grams), the
    numbers a text states, and whether it is negated."""

    features: frozenset[str]
    numbers: frozenset[str]
    negated: bool


@lru_cache(maxsize=4096)
def profile(text: str) -> Profile:
    """The lexical profile of one text (cached: consolidation compares each text many times)."""
    plain = _spell_numbers(_NOT.sub(" not", _THOUSANDS.sub("", normalize(text))))
    numbers = set(_DIGITS.findall(plain))
    tokens = [token for token in _WORD.findall(plain) if token not in STOPWORDS]
    negated = any(token in NEGATIONS for token in tokens)
    stems = {stem(token) for token in tokens if token not in NEGATIONS}
    features = set(stems)
    for word in stems:
        padded = f"#{word}#"
        features.update(padded[i : i + 3] for i in range(len(padded) - 2))
    return Profile(frozenset(features), frozenset(numbers), negated)


def _score(a: Profile, b: Profile) -> float:
    if not a.features or not b.features:
        return 1.0 if a.features == b.features and a.numbers == b.numbers else 0.0
    shared = len(a.features & b.features)
    value = shared / (len(a.features) + len(b.features) - shared)
    if a.negated != b.negated:
        value *= NEGATION_FACTOR
    if a.numbers and b.numbers and a.numbers != b.numbers:
        value *= NUMBER_FACTOR
    return value


def lexical_similarity(a: str, b: str) -> float:
    """How alike two texts are, 0..1, from their words alone (symmetric; 1 for texts that
    normalize alike). Never above the Jaccard similarity of their features."""
    if normalize(a) == normalize(b):
        return 1.0
    return _score(profile(a), profile(b))


# --- grouping --------------------------------------------------------------------------------


def clusters(
    n: int,
    score: Callable[[int, int], float],
    threshold: float,
    *,
    candidates: Iterable[tuple[int, int]] | None = None,
) -> list[list[int]]:
    """Groups of near-duplicates among items ``0..n-1``: complete-linkage agglomeration, so
    every two members of a group have ``score >= threshold``. The closest groups merge first;
    ties go to the lowest indexes, so the output is deterministic: each group sorted, groups
    ordered by their first member, singletons left out.

    ``candidates`` (pairs ``i < j``) may prune the pairs scored: any pair not given must score
    below the threshold. Without it all ``n * (n - 1) / 2`` pairs are scored.
    """
    pairs = candidates if candidates is not None else _all_pairs(n)
    # links[c][k]: complete linkage (the lowest member score) of groups c and k, kept only
    # while it reaches the threshold; a group is named by its lowest member.
    links: dict[int, dict[int, float]] = defaultdict(dict)
    heap: list[tuple[float, int, int]] = []
    for i, j in pairs:
        i, j = min(i, j), max(i, j)
        if i == j or j in links[i]:
            continue
        value = score(i, j)
        if value >= threshold:
            links[i][j] = links[j][i] = value
            heap.append((-value, i, j))
    heapq.heapify(heap)
    members: dict[int, list[int]] = {}
    while heap:
        negative, a, b = heapq.heappop(heap)
        if links.get(a, {}).get(b) != -negative:
            continue  # stale: a or b merged since, and the linkage changed or vanished
        # Merge b into a: the new group links only to groups linked to both.
        members[a] = members.pop(a, [a]) + members.pop(b, [b])
        of_a, of_b = links.pop(a), links.pop(b)
        kept = {}
        for other, value in of_a.items():
            if other == b:
                continue
            del links[other][a]
            if other in of_b:
                kept[other] = min(value, of_b[other])
        for other in of_b:
            if other != a:
                del links[other][b]
        links[a] = kept
        for other, value in kept.items():
            links[other][a] = value
            heapq.heappush(heap, (-value, min(a, other), max(a, other)))
    return sorted(sorted(group) for group in members.values())


def _all_pairs(n: int) -> Iterator[tuple[int, int]]:
    for i in range(n):
        for j in range(i + 1, n):
            yield i, j


# --- the two similarities ---------------------------------------------------------------------


class Similarity(Protocol):
    """A way to compare ``n`` texts pairwise. ``score(i, j)`` is in 0..1 and symmetric; pairs
    at or above ``threshold`` are near-duplicates; ``candidates()`` yields every pair that may
    reach it (the rest are known to fall below)."""

    name: str
    threshold: float
    n: int

    def score(self, i: int, j: int) -> float: ...

    def candidates(self) -> Iterable[tuple[int, int]]: ...


def near_duplicates(similarity: Similarity) -> list[list[int]]:
    """The groups of near-duplicates under ``similarity`` (see ``clusters``)."""
    return clusters(
        similarity.n,
        similarity.score,
        similarity.threshold,
        candidates=similarity.candidates(),
    )


class LexicalSimilarity:
    """``lexical_similarity`` over a list of texts. ``candidates`` uses prefix filtering: the
    score never exceeds the features' Jaccard similarity J, and J >= t needs the two feature
    sets, each ordered rarest first, to share a feature among the first |x| - ceil(t|x|) + 1
    of each; so no pair at or above the threshold is missed, and most pairs are never scored.
    """

    name = LEXICAL_NAME

    def __init__(self, texts: Sequence[str], *, threshold: float) -> None:
        self.texts = list(texts)
        self.threshold = threshold
        self.n = len(self.texts)
        self._profiles = [profile(text) for text in self.texts]
        self._normal = [normalize(text) for text in self.texts]

    def score(self, i: int, j: int) -> float:
        if self._normal[i] == self._normal[j]:
            return 1.0
        return _score(self._profiles[i], self._profiles[j])

    def candidates(self) -> list[tuple[int, int]]:
        frequency: dict[str, int] = defaultdict(int)
        for item in self._profiles:
            for feature in item.features:
                frequency[feature] += 1
        index: dict[str, list[int]] = defaultdict(list)
        found: set[tuple[int, int]] = set()
        by_normal: dict[str, list[int]] = defaultdict(list)
        for i, text in enumerate(self._normal):
            by_normal[text].append(i)
        for same in by_normal.values():  # equal texts score 1, whatever their features
            found.update((a, b) for k, a in enumerate(same) for b in same[k + 1 :])
        t = self.threshold
        for i, item in enumerate(self._profiles):
            ordered = sorted(item.features, key=lambda f: (frequency[f], f))
            size = len(ordered)
            prefix = size - math.ceil(t * size - 1e-9) + 1
            for feature in ordered[:prefix]:
                for j in index[feature]:
                    # Size filter: J >= t needs the smaller set to hold t of the larger.
                    other = len(self._profiles[j].features)
                    if min(size, other) >= t * max(size, other) - 1e-9:
                        found.add((j, i))
                index[feature].append(i)
        return sorted(found)


class EmbeddingSimilarity:
    """Cosine similarity of embedding vectors (negative cosines count as 0). ``candidates``
    is every pair: vectors have no cheap bound, and ``score`` is one dot product of
    unit vectors, normalized once here."""

    def __init__(
        self, vectors: Sequence[Sequence[float]], *, threshold: float, name: str = "embedding"
    ) -> None:
        self.name = name
        self.threshold = threshold
        self.n = len(vectors)
        self._unit = [_unit(vector) for vector in vectors]

    def score(self, i: int, j: int) -> float:
        return max(0.0, min(1.0, _dot(self._unit[i], self._unit[j])))

    def candidates(self) -> Iterator[tuple[int, int]]:
        return _all_pairs(self.n)


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


def _unit(vector: Sequence[float]) -> list[float]:
    length = math.sqrt(math.fsum(x * x for x in vector))
    return [x / length for x in vector] if length else [0.0 for _ in vector]


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """The cosine of the angle between two vectors, -1..1 (0 when either is all zeros)."""
    length = math.sqrt(_dot(a, a) * _dot(b, b))
    return _dot(a, b) / length if length else 0.0
