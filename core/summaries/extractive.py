"""The local extractive summarizer: the embedded default when no LLM API key is configured.

It writes nothing new. It picks whole sentences from the previous summary and the folded
messages, preferring the ones that carry names, numbers, ids, decisions and open tasks, and
keeps them in their original order within a token bound. Deterministic: the same input gives
the same summary, with no network and no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.models import Message
from core.store.tokens import TokenCounter

NAME = "local-extractive"
MAX_SENTENCE_WORDS = 60

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_DIGIT = re.compile(r"\d")
_IDENTIFIER = re.compile(r"[@#]\w|\w[-_/]\w*\d|https?://")
_CAPITALIZED = re.compile(r"\b[A-Z][\w'-]*")
_DECISION = re.compile(
    r"\b(decid\w*|agree\w*|confirm\w*|chose|choose|chosen|will|going to|plan\w*|must|"
    r"need(s|ed)? to|deadline|due|schedul\w*|book\w*|cancel\w*|refund\w*|order\w*|approv\w*|"
    r"reject\w*|prefer\w*|remember|always|never|allerg\w*|budget)\b",
    re.IGNORECASE,
)
_OPEN_TASK = re.compile(
    r"\b(todo|to do|follow[- ]up|next step\w*|pending|open question|remind\w*|waiting|"
    r"escalat\w*|ticket|still|tomorrow|today|next week)\b",
    re.IGNORECASE,
)
_SELF_FACT = re.compile(
    r"\b(my|I am|I'm|I like|I love|I hate|I work|I live|I use|I have|call me)\b", re.IGNORECASE
)
_PLEASANTRY = re.compile(
    r"^(hi|hello|hey|thanks|thank you|ok|okay|sure|great|perfect|cool|bye|goodbye|"
    r"you're welcome|no problem|sounds good|got it)\b",
    re.IGNORECASE,
)
# A sentence must score this much to be kept (greetings and small talk do not); when nothing
# does, the best of the rest are kept so a fold never loses everything it saw.
MIN_SCORE = 2
# Words that start sentences or are capitalized by convention: not evidence of a name.
_COMMON_WORDS = (
    "I I'm I'll I've I'd OK Ok Yes No Hi Hello Thanks Thank Sure Sorry Please The A An This "
    "That It We You He She They My Your Our Can Could Would Should Will What When Where Why "
    "How Is Are Do Does Did Let Here There Also And But So Then Now Just Okay"
)
_COMMON_CAPITALS = frozenset(_COMMON_WORDS.split())


@dataclass(frozen=True, slots=True)
class _Sentence:
    order: tuple[int, int]  # (source, position): previous summary first, then seq order
    text: str
    score: int


def _sentences(text: str) -> list[str]:
    found = []
    for part in _SENTENCE_END.split(text):
        part = " ".join(part.split())
        if len(part) < 3:
            continue
        words = part.split(" ")
        if len(words) > MAX_SENTENCE_WORDS:
            part = " ".join(words[:MAX_SENTENCE_WORDS]) + " …"
        found.append(part)
    return found


def score_sentence(text: str, *, role: str | None) -> int:
    """How much a sentence is worth keeping: names, numbers and ids, decisions, open tasks."""
    score = 0
    if _DIGIT.search(text):
        score += 3
    if _IDENTIFIER.search(text):
        score += 2
    words = text.split(" ")
    names = {
        word.strip(".,;:!?\"'()")
        for word in _CAPITALIZED.findall(" ".join(words[1:]))
        if word not in _COMMON_CAPITALS
    }
    score += 2 * min(3, len(names))
    if _DECISION.search(text):
        score += 3
    if _OPEN_TASK.search(text):
        score += 2
    if role == "user" and _SELF_FACT.search(text):
        score += 2  # what users say about themselves (names, preferences) is worth keeping
    if _PLEASANTRY.match(text) and len(words) <= 8:
        score -= 3
    if role == "user":
        score += 1  # what the user says outlives the assistant's phrasing
    if role == "user" and text.endswith("?"):
        score += 1  # a question may still be open
    return score


class LocalExtractiveSummarizer:
    """Picks the most informative sentences, within ``max_tokens``. No network, no cost."""

    name = NAME
    paid = False

    def __init__(self, *, tokens: TokenCounter, max_tokens: int) -> None:
        self._tokens = tokens
        self.max_tokens = max_tokens

    def describe(self) -> str:
        return f"{NAME} (sentences picked locally, nothing generated)"

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> str:
        candidates: list[_Sentence] = []
        seen: set[str] = set()
        # Carried-over sentences earn a bonus so facts persist across folds, but still compete.
        for position, text in enumerate(_sentences(previous or "")):
            if text not in seen:
                seen.add(text)
                candidates.append(
                    _Sentence((0, position), text, score_sentence(text, role=None) + 2)
                )
        for message in messages:
            for position, text in enumerate(_sentences(message.content)):
                line = f"{message.role}: {text}"
                if line in seen:
                    continue
                seen.add(line)
                candidates.append(
                    _Sentence(
                        (message.seq, position), line, score_sentence(text, role=message.role)
                    )
                )
        ranked = sorted(candidates, key=lambda s: (-s.score, s.order))
        chosen = self._fill([s for s in ranked if s.score >= MIN_SCORE])
        if not chosen:
            chosen = self._fill([s for s in ranked if s.score > 0])
        if not chosen:
            # Nothing fits or nothing was said: keep what we had rather than an empty summary.
            return previous or "(the folded messages had no text)"
        return "\n".join(sentence.text for sentence in sorted(chosen, key=lambda s: s.order))

    def _fill(self, ranked: list[_Sentence]) -> list[_Sentence]:
        chosen: list[_Sentence] = []
        used = 0
        for sentence in ranked:
            cost = self._tokens.count(sentence.text) + 1  # the newline
            if used + cost <= self.max_tokens:
                chosen.append(sentence)
                used += cost
        return chosen
