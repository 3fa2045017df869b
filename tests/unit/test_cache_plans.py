"""The cache namespaces' pure parts: tagged JSON, key checks, lex bounds, chunking and reply
parsing (no Redis); and the breaker's async calls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from core.cache import plans
from core.cache.breaker import Breaker, CircuitOpenError
from core.cache.codec import decode_tagged, encode_tagged
from core.errors import TransientError, ValidationError
from core.store.keys import Keys

# JSON values with bytes anywhere and dict keys that look like the tags.
KEYS_TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["$b", "$", "$$", "$$b", "b"]))
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=10),
    st.binary(max_size=20),
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS_TEXT, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(VALUES)
@settings(max_examples=300)
def test_tagged_json_round_trips_bytes_and_dollar_keys(value: Any) -> None:
    """Whatever mix of JSON, bytes and '$'-keys goes in comes back equal (and as JSON text)."""
    text, size = encode_tagged(value)
    assert size == len(text.encode())
    json.loads(text)  # plain JSON to any reader
    assert decode_tagged(text) == value


def test_tagged_json_shapes() -> None:
    """Bytes are {"$b": base64}; a caller's "$b" key gets one more '$'; no pickle, no code."""
    assert encode_tagged(b"\x00\xff")[0] == '{"$b":"AP8="}'
    assert encode_tagged({"$b": "x"})[0] == '{"$$b":"x"}'
    assert decode_tagged('{"$$b":"x"}') == {"$b": "x"}
    assert encode_tagged((1, b""))[0] == '[1,{"$b":""}]'
    with pytest.raises(ValueError, match="malformed bytes tag"):
        decode_tagged('{"$b":"not base64!"}')
    for bad in ({1}, float("inf"), object(), "\ud800"):
        with pytest.raises(ValidationError) as raised:
            encode_tagged(bad)
        assert raised.value.field == "value"


@given(st.lists(st.text(min_size=1, max_size=5), max_size=30), st.text(max_size=4))
@settings(max_examples=300)
def test_lex_range_selects_exactly_the_keys_with_the_prefix(keys: list[str], prefix: str) -> None:
    """As Redis compares members (bytes, memcmp), the bounds hold every key that starts with the
    prefix and no other, for any Unicode (surrogates excluded: they are not storable)."""
    keys = [key for key in keys if not any("\ud800" <= c <= "\udfff" for c in key)]
    if any("\ud800" <= c <= "\udfff" for c in prefix):
        return
    low, high = plans.lex_range(prefix)
    inside = [key for key in keys if _in_range(key.encode(), low, high)]
    assert sorted(inside) == sorted(key for key in keys if key.startswith(prefix))


def _in_range(member: bytes, low: bytes, high: bytes) -> bool:
    above = low == b"-" or (member >= low[1:] if low[:1] == b"[" else member > low[1:])
    below = high == b"+" or (member <= high[1:] if high[:1] == b"[" else member < high[1:])
    return above and below


def test_lex_range_bounds() -> None:
    """The upper bound is the prefix's bytes with the last one raised, never text + '\\xff'."""
    assert plans.lex_range(None) == plans.lex_range("") == (b"-", b"+")
    assert plans.lex_range("a") == (b"[a", b"(b")
    assert plans.lex_range("a*") == (b"[a*", b"(a+")
    assert plans.lex_range("\u00ff") == (b"[\xc3\xbf", b"(\xc3\xc0")
    assert plans.after("k\u00e9") == b"(k\xc3\xa9"


def test_keys_are_checked_with_their_limits() -> None:
    """Empty, too long, not text, not Unicode: ValidationError naming the field and the limit;
    duplicates in a batch are read once."""
    assert plans.check_keys(["b", "a", "b"]) == ["b", "a"]
    assert plans.check_key("é" * 500) == "é" * 500
    cases = [("", "must not be empty"), ("é" * 501, "at most 1000 bytes"), (b"k", "string")]
    for key, says in cases:
        with pytest.raises(ValidationError, match=says) as raised:
            plans.check_keys([key])  # type: ignore[list-item]
        assert raised.value.field == "key"
    with pytest.raises(ValidationError, match="valid Unicode"):
        plans.check_key("\udc80")


def test_a_batch_keeps_each_key_once_with_its_last_value() -> None:
    """mset([(a, 1), (b, 2), (a, 3)]) writes a=3 and b=2, a after b (its last write)."""
    encoded = plans.encode_pairs([("a", 1), ("b", 2), ("a", 3)], max_value_bytes=10)
    assert [(entry.key, entry.text) for entry in encoded] == [("b", "2"), ("a", "3")]


def test_writes_are_chunked_by_entries_and_bytes() -> None:
    """A big batch becomes several calls (each atomic), by count and by bytes."""
    ns = plans.Namespace.of(Keys("ms", 4), tenant="t", name="n")
    many = [plans.Encoded(f"k{i}", "1", 1) for i in range(plans.CHUNK_ENTRIES * 2 + 1)]
    calls = plans.write_calls(ns, many, ["s"] * len(many))
    assert [len(call.args) for call in calls] == [2 + 3 * 500, 2 + 3 * 500, 2 + 3]
    big = [plans.Encoded(f"k{i}", "x", plans.CHUNK_BYTES // 2 + 1) for i in range(3)]
    assert len(plans.write_calls(ns, big, ["s"] * 3)) == 3
    one = plans.write_calls(ns, many[:1], ["s"])[0]
    assert one.keys == [
        "ms:{cache}:x:t:n",
        "ms:{cache}:xt:t",  # the tenant's namespaces (erase_tenant)
        "ms:{cache}:v:~t:n:6b30",
        "ms:{cache}:s:~t:n:6b30",
    ]
    assert plans.delete_calls(ns, []) == [] and plans.read_calls(ns, [], []) == []


def test_replies_are_parsed_as_text_or_bytes() -> None:
    """A client without decode_responses hands bytes: the parsers accept both."""
    fresh = plans.Fresh('"v"', "s", None)
    assert plans.parse_read([0, 1, [b'"v"', b"s", -1]]) == [None, plans.CURRENT, fresh]
    assert plans.parse_read([["x", "s", 1500]]) == [plans.Fresh("x", "s", 1500)]
    page = plans.parse_page([2, b"b", [b"a", "b"]])
    assert page == plans.Page(2, "b", ["a", "b"])
    assert plans.parse_page([0, None, []]).last is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_async_calls_share_the_breaker_states() -> None:
    """acall opens on outages like call, fails fast while open, and a half-open probe that is
    cancelled frees the probe slot instead of blocking every later call."""
    clock = Clock()
    breaker = Breaker(failures=2, cooldown_s=1.0, clock=clock)

    async def down() -> None:
        raise redis.ConnectionError("refused")

    async def up() -> str:
        return "ok"

    async def hang() -> None:
        await asyncio.sleep(10)

    async def scenario() -> None:
        for _ in range(2):
            with pytest.raises(TransientError):
                await breaker.acall(down)
        assert breaker.state == "open"
        with pytest.raises(CircuitOpenError):
            await breaker.acall(up)
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: "sync too")
        clock.now += 1.0
        probe = asyncio.ensure_future(breaker.acall(hang))
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpenError):  # one probe at a time
            await breaker.acall(up)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        assert breaker.state == "half_open"
        assert await breaker.acall(up) == "ok"
        assert breaker.state == "closed"

    asyncio.run(scenario())
