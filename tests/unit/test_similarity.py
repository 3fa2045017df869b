"""The similarity layer: normalization and hashes, the lexical score, and complete-linkage
groups (deterministic, no chaining, candidates pruned without missing a pair)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.memories.similarity import (
    EmbeddingSimilarity,
    LexicalSimilarity,
    clusters,
    content_hash,
    cosine,
    lexical_similarity,
    near_duplicates,
    normalize,
)

FACTS = [
    "User prefers window seats",
    "User is allergic to peanuts",
    "User's daughter is named Emma",
    "User lives in Berlin",
    "User drives a 2018 Honda Civic",
    "User works as a nurse at St. Mary's",
]


def test_normalize_folds_case_width_space_and_edge_punctuation() -> None:
    """ "I like Tea." and "i  like tea" normalize alike; punctuation inside words stays."""
    assert normalize("I like Tea.") == normalize("i  like tea") == "i like tea"
    assert normalize("\uff29 LIKE\u00a0tea!!") == "i like tea"  # NFKC: fullwidth I, nbsp
    assert normalize("Stra\u00dfe") == normalize("STRASSE")  # casefold, not lower
    assert normalize("(don't) call at 8:15, they/them") == "don't call at 8:15 they/them"
    assert normalize(" -- ") == ""


def test_exact_duplicates_share_a_content_hash() -> None:
    """Equal hashes exactly when normalized texts are equal; a SHA-256 hex digest."""
    assert content_hash("User likes Tea.") == content_hash("  user likes tea ")
    assert content_hash("User likes tea") != content_hash("User likes coffee")
    assert len(content_hash("x")) == 64 and int(content_hash("x"), 16) >= 0


def test_lexical_scores_order_rewordings_above_other_facts() -> None:
    """A rewording outscores a different fact; numbers and negation pull scores down."""
    same = lexical_similarity("User prefers a window seat", "User prefers window seats.")
    other = lexical_similarity("User prefers window seats", "User is allergic to peanuts")
    assert same == 1.0 and other < 0.2 < same
    reworded = lexical_similarity(
        "User works at Stripe as a software engineer", "User is a software engineer at Stripe"
    )
    assert reworded > lexical_similarity("User lives in Berlin", "User's mother lives in Manila")
    plain = lexical_similarity("User has cats", "User has many cats")
    numbers = lexical_similarity("User has 2 cats", "User has 3 cats")
    assert numbers < plain
    assert lexical_similarity("User has two cats", "User has 2 cats") == 1.0
    assert lexical_similarity("User is vegetarian", "User is not vegetarian") <= 0.5
    assert lexical_similarity("User's pronouns are they/them", "User's pronouns are she/her") < 1


def test_clusters_are_complete_linkage_and_do_not_chain() -> None:
    """A~B and B~C but not A~C: B joins one of them, never both (no silent glue)."""
    scores = {(0, 1): 0.9, (1, 2): 0.85, (0, 2): 0.1, (3, 4): 0.95}

    def score(i: int, j: int) -> float:
        return scores.get((i, j), 0.0)

    assert clusters(5, score, 0.8) == [[0, 1], [3, 4]]
    # Every two members of every group reach the threshold.
    for group in clusters(5, score, 0.8):
        assert all(score(i, j) >= 0.8 for i in group for j in group if i < j)


def test_clusters_merge_a_clique_and_ignore_singletons() -> None:
    """Three mutually similar items form one group; an item alike to none is left out."""
    texts = [
        "User prefers window seats",
        "Unrelated: user is allergic to peanuts",
        "user prefers a window seat",
        "User prefers window seats!",
    ]
    similarity = LexicalSimilarity(texts, threshold=0.9)
    assert near_duplicates(similarity) == [[0, 2, 3]]


def test_clusters_are_deterministic_whatever_the_candidate_order() -> None:
    """Shuffled candidates and tied scores give the same sorted groups."""
    n = 12
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]

    def score(i: int, j: int) -> float:
        return 0.9 if i // 4 == j // 4 else (0.85 if (i + j) % 5 == 0 else 0.2)

    expected = clusters(n, score, 0.8)
    for seed in range(5):
        shuffled = pairs[:]
        random.Random(seed).shuffle(shuffled)
        assert clusters(n, score, 0.8, candidates=shuffled) == expected
    assert all(group == sorted(group) for group in expected)
    assert expected == sorted(expected)


def test_pruned_candidates_miss_no_pair_at_the_threshold() -> None:
    """Prefix filtering: every pair scoring >= threshold is among the candidates."""
    rng = random.Random(7)
    words = "user likes tea coffee window seat aisle train flight peanuts cats two dogs"
    vocabulary = words.split()
    texts = [" ".join(rng.choice(vocabulary) for _ in range(rng.randint(2, 6))) for _ in range(150)]
    for threshold in (0.3, 0.5, 0.8, 1.0):
        similarity = LexicalSimilarity(texts, threshold=threshold)
        candidates = set(similarity.candidates())
        for i in range(len(texts)):
            for j in range(i + 1, len(texts)):
                if similarity.score(i, j) >= threshold:
                    assert (i, j) in candidates, (texts[i], texts[j], threshold)
        assert near_duplicates(similarity) == clusters(len(texts), similarity.score, threshold)


def test_a_thousand_memories_group_with_pruning() -> None:
    """1,000 memories of one subject: groups found, a small share of all pairs scored."""
    texts = [f"{fact} (note {i % 7})" for i in range(170) for fact in FACTS][:1000]
    similarity = LexicalSimilarity(texts, threshold=0.9)
    groups = near_duplicates(similarity)
    # One group per fact and note number: other notes differ in a number, other facts in words.
    assert len(groups) == len(FACTS) * 7
    assert sum(len(group) for group in groups) == 1000
    assert len(list(similarity.candidates())) < 1000 * 999 // 2


def test_embedding_similarity_is_cosine_of_unit_vectors() -> None:
    """Scores are cosines (negatives count as 0); groups as for any similarity."""
    vectors = [[1.0, 0.0], [0.99, 0.1], [-1.0, 0.0], [0.0, 2.0]]
    similarity = EmbeddingSimilarity(vectors, threshold=0.95)
    assert similarity.score(0, 1) == pytest.approx(cosine(vectors[0], vectors[1]))
    assert similarity.score(0, 2) == 0.0 and cosine(vectors[0], vectors[2]) == -1.0
    assert cosine([0.0, 0.0], [1.0, 1.0]) == 0.0
    assert near_duplicates(similarity) == [[0, 1]]


@given(st.text(max_size=80), st.text(max_size=80))
def test_lexical_similarity_is_symmetric_and_bounded(a: str, b: str) -> None:
    """Any two texts: the score is symmetric, in 0..1, and 1 for a text and itself."""
    score = lexical_similarity(a, b)
    assert 0.0 <= score <= 1.0
    assert score == lexical_similarity(b, a)
    assert lexical_similarity(a, a) == 1.0


@given(st.lists(st.text(alphabet="ab c1.", max_size=12), max_size=25))
def test_groups_partition_and_reach_the_threshold(texts: list[str]) -> None:
    """Any texts: groups are disjoint, size >= 2, and every member pair reaches it."""
    similarity = LexicalSimilarity(texts, threshold=0.6)
    groups = near_duplicates(similarity)
    members = [i for group in groups for i in group]
    assert len(members) == len(set(members))
    for group in groups:
        assert len(group) >= 2
        assert all(similarity.score(i, j) >= 0.6 for i in group for j in group if i < j)
