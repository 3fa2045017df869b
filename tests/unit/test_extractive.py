"""The local extractive summarizer: deterministic, keeps what matters, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

from core.models import Message
from core.store.tokens import token_counter
from core.summaries.extractive import LocalExtractiveSummarizer, score_sentence

FILLER = [
    "Hi there!",
    "Thanks, that is really helpful.",
    "Okay sounds good to me.",
    "Sure, happy to help with that.",
]
FACTS = [
    "My name is Priya Raman and I manage the Berlin office.",
    "We decided to move the launch to March 14.",
    "Please remind me to send invoice #4471 next week.",
]


def _messages(texts: list[str]) -> list[Message]:
    now = datetime.now(UTC)
    return [
        Message(f"m{i}", i + 1, "user" if i % 2 == 0 else "assistant", text, 10, now)
        for i, text in enumerate(texts)
    ]


def _summarizer(max_tokens: int) -> LocalExtractiveSummarizer:
    return LocalExtractiveSummarizer(
        tokens=token_counter("tiktoken", "gpt-4o-mini"), max_tokens=max_tokens
    )


def test_names_numbers_decisions_and_tasks_outrank_filler() -> None:
    """Each kind of fact scores above every filler line."""
    assert min(score_sentence(f, role="user") for f in FACTS) > max(
        score_sentence(f, role="user") for f in FILLER
    )


def test_keeps_the_facts_in_order_and_drops_small_talk() -> None:
    """Greetings and thanks are dropped; the kept sentences stay in conversation order."""
    texts = [FILLER[0], FACTS[0], FILLER[1], FACTS[1], FILLER[2], FACTS[2], FILLER[3]]
    summarizer = _summarizer(60)
    summary = summarizer.summarize(previous=None, messages=_messages(texts))
    lines = summary.splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == FACTS
    assert token_counter("tiktoken", "gpt-4o-mini").count(summary) <= 60


def test_is_deterministic_and_carries_earlier_facts() -> None:
    """The same input gives the same text; the previous summary's facts survive a fold."""
    summarizer = _summarizer(80)
    first = summarizer.summarize(previous=None, messages=_messages([FACTS[0], FILLER[0]]))
    assert first == summarizer.summarize(previous=None, messages=_messages([FACTS[0], FILLER[0]]))
    second = summarizer.summarize(previous=first, messages=_messages([FILLER[1], FACTS[1]]))
    assert "Priya Raman" in second and "March 14" in second
    assert "Thanks" not in second


def test_never_returns_an_empty_summary() -> None:
    """Messages without text keep the previous summary rather than erase it."""
    summarizer = _summarizer(50)
    assert (
        summarizer.summarize(previous="Kept fact 42.", messages=_messages([""])) == "Kept fact 42."
    )
    assert summarizer.summarize(previous=None, messages=_messages([""]))


def test_a_tight_bound_keeps_the_best_sentences() -> None:
    """With room for one sentence, the highest-scoring fact is the one kept."""
    texts = [*FACTS, *FILLER]
    counter = token_counter("tiktoken", "gpt-4o-mini")
    best = max(FACTS, key=lambda f: score_sentence(f, role="user"))
    summary = _summarizer(counter.count(f"user: {best}") + 1).summarize(
        previous=None, messages=_messages([best, *[t for t in texts if t != best]])
    )
    assert summary == f"user: {best}"
