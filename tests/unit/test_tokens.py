"""Token counts with tiktoken's real encodings (from TIKTOKEN_CACHE_DIR when offline)."""

from __future__ import annotations

import pytest

from core.errors import ConfigurationError
from core.tokens import EstimateCounter, token_counter


def test_known_counts_cl100k() -> None:
    """OpenAI's cookbook example: "tiktoken is great!" is 6 tokens in cl100k_base."""
    counter = token_counter("tiktoken", "gpt-4")
    assert counter.name == "tiktoken:cl100k_base"
    assert counter.count("tiktoken is great!") == 6


def test_default_model_uses_o200k() -> None:
    """gpt-4o-mini maps to o200k_base; a chat message adds 3 framing tokens and the role."""
    counter = token_counter("tiktoken", "gpt-4o-mini")
    assert counter.name == "tiktoken:o200k_base"
    assert counter.count_message("user", "tiktoken is great!") == 3 + counter.count(
        "user"
    ) + counter.count("tiktoken is great!")


def test_special_tokens_in_user_text_are_plain_text() -> None:
    """A user typing <|endoftext|> is counted as text, not refused."""
    assert token_counter("tiktoken", "gpt-4o-mini").count("<|endoftext|>") > 1


def test_estimate_is_explicit() -> None:
    """The estimate counter says it is one and counts about 4 bytes a token."""
    counter = token_counter("estimate", "anything")
    assert isinstance(counter, EstimateCounter) and not counter.exact
    assert counter.count("x" * 400) == 100


def test_unknown_tokenizer_fails_clearly() -> None:
    """A tokenizer name that is neither choice is a configuration error naming the setting."""
    with pytest.raises(ConfigurationError, match="MEMSCRIBE_TOKENIZER"):
        token_counter("magic", "gpt-4o-mini")
