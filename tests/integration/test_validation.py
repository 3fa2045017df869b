"""Bad input: a clear error naming the field and the limit, and no trace in Redis."""

from __future__ import annotations

from typing import Any

import pytest

from core.client import MemoryClient
from core.errors import ValidationError
from tests.helpers.redis_state import redis_snapshot

GOOD: dict[str, Any] = {"session_id": "s-1", "role": "user", "content": "hello"}

CASES = [
    # (overrides, field, words the message must contain)
    ({"session_id": ""}, "session_id", "1-128 characters"),
    ({"session_id": "a" * 129}, "session_id", "1-128 characters"),
    ({"session_id": "has:colon"}, "session_id", "A-Z a-z 0-9"),
    ({"session_id": "glob*"}, "session_id", "A-Z a-z 0-9"),
    ({"session_id": "tag{1}"}, "session_id", "A-Z a-z 0-9"),
    ({"session_id": "-leading-dash"}, "session_id", "starting with a letter or digit"),
    ({"session_id": 42}, "session_id", "must be a string"),
    ({"tenant": "t?"}, "tenant", "A-Z a-z 0-9"),
    ({"tenant": "sp ace"}, "tenant", "A-Z a-z 0-9"),
    ({"subject_id": "[abc]"}, "subject_id", "A-Z a-z 0-9"),
    ({"message_id": "back\\slash"}, "message_id", "A-Z a-z 0-9"),
    ({"role": "admin"}, "role", "user, assistant, system, tool"),
    ({"role": None}, "role", "user, assistant, system, tool"),
    ({"content": b"bytes"}, "content", "must be a string"),
    ({"content": None}, "content", "must be a string"),
    ({"content": "x" * 65_537}, "content", "the limit is 65536 bytes"),
    ({"content": "é" * 32_769}, "content", "the limit is 65536 bytes"),
    ({"content": "nul\x00byte"}, "content", "NUL"),
    ({"content": "lone \ud800 surrogate"}, "content", "lone surrogate"),
    ({"metadata": ["not", "a", "dict"]}, "metadata", "JSON object"),
    ({"metadata": {"k": object()}}, "metadata", "only JSON types"),
    ({"metadata": {1: "int key"}}, "metadata", "keys must be strings"),
    ({"metadata": {"n": float("nan")}}, "metadata", "finite"),
    ({"metadata": {"s": "nul\x00"}}, "metadata", "NUL"),
    ({"metadata": {"big": "x" * 9000}}, "metadata", "the limit is 8192 bytes"),
    ({"metadata": {"t": (1, 2)}}, "metadata", "only JSON types"),
]
deep: dict[str, Any] = {}
cursor = deep
for _ in range(20):
    cursor["d"] = {}
    cursor = cursor["d"]
CASES.append(({"metadata": deep}, "metadata", "deeper than 16"))


@pytest.mark.parametrize(("overrides", "field", "words"), CASES)
def test_bad_input_is_refused_and_leaves_no_trace(
    client: MemoryClient, overrides: dict[str, Any], field: str, words: str
) -> None:
    """Each rule names its field and limit; Redis is byte-for-byte unchanged."""
    client.append("s-1", "user", "an existing message", subject_id="alice")
    before = redis_snapshot(client.redis)
    arguments = {**GOOD, **overrides}
    with pytest.raises(ValidationError) as error:
        client.append(
            arguments.pop("session_id"),
            arguments.pop("role"),
            arguments.pop("content"),
            **arguments,
        )
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")
    assert words in str(error.value)
    assert redis_snapshot(client.redis) == before


def test_limits_are_inclusive(client: MemoryClient) -> None:
    """Input exactly at each limit is accepted."""
    result = client.append(
        "a" * 128,
        "system",
        "x" * 65_536,
        tenant="T" * 128,
        metadata={"k": "v" * (8192 - len('{"k":""}'))},
    )
    assert result.seq == 1
    assert client.context("a" * 128, tenant="T" * 128).messages[0].content == "x" * 65_536


def test_context_validates_ids(client: MemoryClient) -> None:
    """context() refuses unsafe ids the same way."""
    with pytest.raises(ValidationError) as error:
        client.context("s*")
    assert error.value.field == "session_id"
