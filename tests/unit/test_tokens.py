"""Token counts with tiktoken's real encodings (from TIKTOKEN_CACHE_DIR when offline)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import ConfigurationError
from core.store.tokens import EstimateCounter, token_counter

ROOT = Path(__file__).resolve().parents[2]


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


# OpenAI cookbook, "How to count tokens with tiktoken": these six example messages count 129
# prompt tokens for gpt-3.5-turbo and gpt-4 (cl100k_base) and 124 for gpt-4o and gpt-4o-mini
# (o200k_base): 3 tokens of framing per message, 1 per name, 3 to prime the reply.
COOKBOOK_MESSAGES = [
    (
        "system",
        None,
        "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    ),
    ("system", "example_user", "New synergies will help drive top-line growth."),
    ("system", "example_assistant", "Things working well together will increase revenue."),
    (
        "system",
        "example_user",
        "Let's circle back when we have more bandwidth to touch base on opportunities for "
        "increased leverage.",
    ),
    (
        "system",
        "example_assistant",
        "Let's talk later when we're less busy about how to do better.",
    ),
    (
        "user",
        None,
        "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    ),
]


@pytest.mark.parametrize(
    ("model", "encoding", "expected"),
    [
        ("gpt-4", "cl100k_base", 129),
        ("gpt-3.5-turbo", "cl100k_base", 129),
        ("gpt-4o", "o200k_base", 124),
        ("gpt-4o-mini", "o200k_base", 124),
    ],
)
def test_chat_framing_matches_the_openai_cookbook(model: str, encoding: str, expected: int) -> None:
    """count_message reproduces the cookbook's exact prompt counts with the cached encodings."""
    counter = token_counter("tiktoken", model)
    assert counter.name == f"tiktoken:{encoding}" and counter.exact
    total = sum(
        counter.count_message(role, content) + (counter.count(name) + 1 if name else 0)
        for role, name, content in COOKBOOK_MESSAGES
    )
    assert total + 3 == expected


def test_known_strings_in_o200k() -> None:
    """Exact o200k_base counts for fixed strings (empty text costs only the framing)."""
    counter = token_counter("tiktoken", "gpt-4o-mini")
    assert counter.count("tiktoken is great!") == 6
    assert counter.count("") == 0
    assert counter.count_message("user", "") == 3 + counter.count("user") == 4


def test_missing_encoding_fails_at_start_up_naming_both_ways_out(tmp_path: object) -> None:
    """No cache and no network: a ConfigurationError that names TIKTOKEN_CACHE_DIR and the
    estimate option, never a silent estimate."""
    code = (
        "from core.errors import ConfigurationError\n"
        "from core.store.tokens import token_counter\n"
        "try:\n"
        "    token_counter('tiktoken', 'gpt-4o-mini')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
        "else:\n"
        "    raise SystemExit('loaded without a cache')\n"
    )
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(tmp_path),
        # Any download attempt fails fast: nothing listens on port 9 (discard).
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "TIKTOKEN_CACHE_DIR" in result.stdout
    assert "MEMSCRIBE_TOKENIZER=estimate" in result.stdout
