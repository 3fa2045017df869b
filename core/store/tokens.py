"""Token counting, done in the client before the single Redis call (no I/O after start-up).

Counts follow OpenAI's guide for chat messages: every message costs 3 tokens of framing plus
its role and content. Encodings load once per process; offline machines point
``TIKTOKEN_CACHE_DIR`` at a folder holding the encoding files.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Protocol

import tiktoken

from core.errors import ConfigurationError

log = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 3
# Used when the configured model is unknown to tiktoken (a self-hosted OpenAI-compatible one).
FALLBACK_ENCODING = "o200k_base"


class TokenCounter(Protocol):
    name: str
    exact: bool

    def count(self, text: str) -> int: ...

    def count_message(self, role: str, content: str) -> int: ...


class TiktokenCounter:
    """Exact counts with the model's tiktoken encoding."""

    exact = True

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._encoding = encoding
        self.name = f"tiktoken:{encoding.name}"
        self._role_tokens: dict[str, int] = {}

    def count(self, text: str) -> int:
        # disallowed_special=(): a user typing "<|endoftext|>" is text, not an error.
        return len(self._encoding.encode(text, disallowed_special=()))

    def count_message(self, role: str, content: str) -> int:
        role_tokens = self._role_tokens.get(role)
        if role_tokens is None:
            role_tokens = self._role_tokens[role] = self.count(role)
        return TOKENS_PER_MESSAGE + role_tokens + self.count(content)


class EstimateCounter:
    """About four UTF-8 bytes a token. Only when the operator chose it; reported as such."""

    exact = False
    name = "estimate:4-bytes-per-token"

    def count(self, text: str) -> int:
        return (len(text.encode("utf-8")) + 3) // 4

    def count_message(self, role: str, content: str) -> int:
        return TOKENS_PER_MESSAGE + 1 + self.count(content)


def _load_encoding(model: str) -> tiktoken.Encoding:
    try:
        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            # Said out loud: counts for a self-hosted model are an approximation.
            log.warning(
                "tiktoken does not know model %r; counting tokens with %s", model, FALLBACK_ENCODING
            )
            return tiktoken.get_encoding(FALLBACK_ENCODING)
    except Exception as exc:  # tiktoken raises requests/urllib errors when it cannot download
        raise ConfigurationError(
            f"cannot load the tiktoken encoding for model {model!r} ({exc.__class__.__name__}: "
            f"{exc}). Offline? Set TIKTOKEN_CACHE_DIR to a folder holding the encoding files, "
            "or choose estimated counts with MEMSCRIBE_TOKENIZER=estimate."
        ) from exc


@lru_cache(maxsize=8)
def token_counter(tokenizer: str, model: str) -> TokenCounter:
    """The process-wide counter for a tokenizer choice; loads the encoding at most once."""
    if tokenizer == "estimate":
        return EstimateCounter()
    if tokenizer == "tiktoken":
        return TiktokenCounter(_load_encoding(model))
    raise ConfigurationError(
        f"MEMSCRIBE_TOKENIZER must be 'tiktoken' or 'estimate', got {tokenizer!r}"
    )
