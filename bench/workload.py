"""The synthetic chat traffic every section uses: ~100-token messages over N sessions."""

from __future__ import annotations

import random
from dataclasses import dataclass

from core.store.tokens import TokenCounter

SAMPLE_TEXT = (
    "the refund for order was charged twice on my card and support said it would take five "
    "business days but nothing arrived yet can you check the invoice history and tell me which "
    "plan includes priority routing for our team of twelve engineers who deploy the API behind "
    "a proxy with rate limits per key while the dashboard shows error codes after each release"
)
WORDS = SAMPLE_TEXT.split(" ")
POOL_SIZE = 256


@dataclass(frozen=True)
class Workload:
    """Deterministic messages: ``content(i)`` and ``session(i)`` for message number ``i``."""

    sessions: int
    contents: tuple[str, ...]

    @classmethod
    def build(cls, *, sessions: int, tokens: int, counter: TokenCounter, seed: int = 7) -> Workload:
        """A pool of contents of ``tokens`` tokens each (as counted for a chat message)."""
        rng = random.Random(seed)
        contents = []
        for _ in range(POOL_SIZE):
            words: list[str] = []
            while counter.count_message("user", " ".join(words)) < tokens:
                words.append(rng.choice(WORDS))
            contents.append(" ".join(words))
        return cls(sessions=sessions, contents=tuple(contents))

    def session(self, i: int) -> str:
        return f"chat-{i % self.sessions:05d}"

    def content(self, i: int) -> str:
        return self.contents[i % len(self.contents)]

    def role(self, i: int) -> str:
        return "user" if (i // self.sessions) % 2 == 0 else "assistant"

    @property
    def mean_content_bytes(self) -> float:
        return sum(len(c.encode()) for c in self.contents) / len(self.contents)
