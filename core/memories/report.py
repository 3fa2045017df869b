"""What a consolidation pass did, in counts (never content)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ConsolidationReport:
    """Counts of one pass (or several, added up).

    ``refused``: LLM (or local) merges the guard turned down, by reason (``empty``,
    ``invalid``, ``too_short``, ``too_long``, ``dropped_words``); the sources stay.
    ``skipped``: work left for a later pass, by reason: ``busy`` (another worker holds the
    subject), ``waiting`` (its newest change is not durable yet), ``changed`` (a change
    arrived during the merge: rolled back), ``superseded`` (a source was merged elsewhere:
    rolled back), ``budget`` (the tenant's daily tokens are spent), ``lease_lost``,
    ``unavailable`` (the LLM or a store failed transiently), ``failed`` (a permanent error).
    """

    subjects: int = 0
    clusters: int = 0
    merged: int = 0
    exact: int = 0
    superseded: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: ConsolidationReport) -> None:
        for name in (
            "subjects",
            "clusters",
            "merged",
            "exact",
            "superseded",
            "llm_calls",
            "prompt_tokens",
            "completion_tokens",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.refused.update(other.refused)
        self.skipped.update(other.skipped)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subjects": self.subjects,
            "clusters": self.clusters,
            "merged": self.merged,
            "exact": self.exact,
            "superseded": self.superseded,
            "llm_calls": self.llm_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "refused": dict(sorted(self.refused.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }
