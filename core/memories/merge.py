"""Mergers that fold a cluster of near-duplicate memories into one text, and the guard that
refuses a merge which loses the sources' content.

- ``LocalMerger`` ("local"): no LLM, deterministic. Keeps the longest source and appends the
  sentences of the others it does not already say. Nothing is generated.
- ``LLMMerger`` ("llm:<model>"): OpenAI chat completions (or any compatible server) through the
  real ``openai`` client, its own retries off. Timeouts, 408/409/429 and 5xx become
  ``LLMUnavailable`` (retried by the ``llm`` task family); other refusals ``PermanentError``.

``guard`` checks every result before it is written: an empty or invalid text, one shorter than
``merge_min_ratio`` or longer than ``merge_max_ratio`` times the longest source, or one keeping
under ``merge_min_word_share`` of the sources' distinct content words is refused, by reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from config.settings import Settings
from core.errors import ConfigurationError, ValidationError
from core.memories.model import validate_memory_content
from core.memories.similarity import normalize
from core.summaries.llm import openai_client, openai_errors

log = logging.getLogger(__name__)

SYSTEM_PROMPT = """\
You merge near-duplicate notes about one person into a single note. Keep every fact, name, \
number, date, preference and condition that any note states, exactly as written; drop only \
repetition. Do not add anything the notes do not say. Answer with the merged note alone: plain \
sentences, no preamble, no list markers. If the notes state different facts rather than one \
fact in other words (another date, number, name, place, or the opposite), answer DISTINCT \
and nothing else."""
# The LLM's verdict that a cluster holds look-alike facts, not one fact: nothing is merged.
DISTINCT = "DISTINCT"

_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")
# Words that carry no fact: a merge may drop them freely.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "he",
        "her",
        "his",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "that",
        "the",
        "their",
        "them",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "will",
        "with",
        "you",
        "your",
    ]
)
REASONS = ("distinct", "empty", "invalid", "too_short", "too_long", "dropped_words")


@dataclass(frozen=True, slots=True)
class MergeText:
    """A merger's answer and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class Merger(Protocol):
    """Folds the texts of one cluster into one. ``paid`` mergers spend tokens (budgets apply);
    ``method`` is what memory_lineage records."""

    method: str
    paid: bool

    def merge(self, texts: Sequence[str]) -> MergeText: ...


def content_words(text: str) -> set[str]:
    return {word for word in _WORD.findall(normalize(text)) if word not in STOPWORDS}


def guard(texts: Sequence[str], merged: str, settings: Settings) -> str | None:
    """Why ``merged`` must not replace ``texts`` (one of ``REASONS``), or None when it may."""
    if not merged.strip():
        return "empty"
    if merged.strip().rstrip(".").upper() == DISTINCT:
        return "distinct"
    try:
        validate_memory_content(merged, max_bytes=settings.max_memory_bytes)
    except ValidationError:
        return "invalid"
    longest = max(len(text) for text in texts)
    if len(merged) < settings.merge_min_ratio * longest:
        return "too_short"
    if len(merged) > settings.merge_max_ratio * longest:
        return "too_long"
    words = set().union(*(content_words(text) for text in texts))
    if words and len(words & content_words(merged)) < settings.merge_min_word_share * len(words):
        return "dropped_words"
    return None


class LocalMerger:
    """The deterministic no-LLM merger: the longest source, then the other sources' sentences
    it does not already contain (compared normalized), in source order."""

    method = "local"
    paid = False

    def merge(self, texts: Sequence[str]) -> MergeText:
        ordered = sorted(texts, key=lambda text: (-len(text), text))
        parts = [ordered[0].strip()]
        seen = {normalize(sentence) for sentence in _SENTENCE.split(ordered[0])}
        for text in ordered[1:]:
            for sentence in _SENTENCE.split(text.strip()):
                key = normalize(sentence)
                if key and key not in seen:
                    seen.add(key)
                    parts.append(sentence if sentence.rstrip()[-1:] in ".!?" else sentence + ".")
        if parts[0] and parts[0][-1] not in ".!?" and len(parts) > 1:
            parts[0] += "."
        return MergeText(" ".join(parts))


def merge_prompt(texts: Sequence[str]) -> str:
    lines = ["Notes to merge:"]
    lines += [f"{index}. {text}" for index, text in enumerate(texts, start=1)]
    return "\n".join(lines)


class LLMMerger:
    """Chat completions at temperature 0 (OpenAI or any compatible server)."""

    paid = True

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        base_url: str = "",
        timeout_s: float = 30.0,
        max_tokens: int = 512,
        retry_after_cap_s: float = 300.0,
    ) -> None:
        self.model = model
        self.method = f"llm:{model}"
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.retry_after_cap_s = retry_after_cap_s
        self._client = openai_client(api_key=api_key, base_url=base_url, timeout_s=timeout_s)

    def merge(self, texts: Sequence[str]) -> MergeText:
        with openai_errors(
            "LLM", timeout_s=self.timeout_s, retry_after_cap_s=self.retry_after_cap_s
        ):
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=[
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": merge_prompt(texts)},
                ],
                temperature=0,
                max_completion_tokens=self.max_tokens,
            )
        # An empty answer is the guard's to refuse ("empty"), like any other bad merge.
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        usage = completion.usage
        if usage is None:
            return MergeText(text)
        return MergeText(text, usage.prompt_tokens, usage.completion_tokens)


def merger_from_settings(settings: Settings) -> Merger:
    """``MEMSCRIBE_MEMORY_MERGER``: "auto" is the LLM when an API key is set, else local."""
    key = settings.openai_api_key.get_secret_value()
    choice = settings.memory_merger
    if choice == "local" or (choice == "auto" and not key):
        return LocalMerger()
    if not key and not settings.openai_base_url:
        raise ConfigurationError(
            "MEMSCRIBE_MEMORY_MERGER=openai needs MEMSCRIBE_OPENAI_API_KEY (or "
            "MEMSCRIBE_OPENAI_BASE_URL for a server that takes no key)"
        )
    return LLMMerger(
        api_key=key or "no-key",
        model=settings.summary_model_name,
        base_url=settings.openai_base_url,
        timeout_s=settings.llm_timeout_s,
        max_tokens=settings.summary_max_tokens,
        retry_after_cap_s=settings.retry_cap_s,
    )
