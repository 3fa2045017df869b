"""The local level: an LRU bounded by entries and bytes, with per-entry TTLs; the breaker's
states on a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.cache.breaker import Breaker, CircuitOpenError
from core.cache.local import LocalLRU
from core.errors import TransientError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_evicts_least_recently_used_past_max_entries() -> None:
    """Past max_entries the least recently used entry goes, not the least recently written."""
    lru = LocalLRU(max_entries=2, max_bytes=1000)
    lru.put("a", 1, size_bytes=1, ttl_s=60)
    lru.put("b", 2, size_bytes=1, ttl_s=60)
    assert lru.get("a") is not None  # a is now the most recent
    lru.put("c", 3, size_bytes=1, ttl_s=60)
    assert lru.get("b") is None
    assert [lru.get(k).value for k in ("a", "c")] == [1, 3]  # type: ignore[union-attr]
    assert lru.evictions == 1


def test_evicts_past_max_bytes_and_refuses_an_entry_larger_than_the_budget() -> None:
    """The byte bound evicts the oldest; one value above the whole budget is not kept."""
    lru = LocalLRU(max_entries=100, max_bytes=10)
    lru.put("a", "x", size_bytes=4, ttl_s=60)
    lru.put("b", "y", size_bytes=4, ttl_s=60)
    lru.put("c", "z", size_bytes=4, ttl_s=60)
    assert lru.get("a") is None and lru.size_bytes == 8
    assert lru.put("huge", "h", size_bytes=11, ttl_s=60) is False
    assert lru.get("huge") is None and len(lru) == 2


def test_replacing_an_entry_updates_the_byte_count() -> None:
    """Writing a key twice counts its bytes once."""
    lru = LocalLRU(max_entries=10, max_bytes=100)
    lru.put("a", 1, size_bytes=30, ttl_s=60)
    lru.put("a", 2, size_bytes=10, ttl_s=60)
    assert lru.size_bytes == 10 and lru.get("a").value == 2  # type: ignore[union-attr]


def test_entries_expire_after_their_own_ttl() -> None:
    """Each entry lives for its own TTL."""
    clock = Clock()
    lru = LocalLRU(max_entries=10, max_bytes=100, clock=clock)
    lru.put("short", 1, size_bytes=1, ttl_s=1)
    lru.put("long", 2, size_bytes=1, ttl_s=10)
    clock.now += 5
    assert lru.get("short") is None
    assert lru.get("long") is not None
    assert lru.size_bytes == 1


@settings(max_examples=200, deadline=None)
@given(
    max_entries=st.integers(1, 8),
    max_bytes=st.integers(1, 64),
    operations=st.lists(
        st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 80), st.booleans()), max_size=60
    ),
)
def test_never_exceeds_its_bounds(
    max_entries: int, max_bytes: int, operations: list[tuple[str, int, bool]]
) -> None:
    """Whatever is written or deleted, entries and bytes stay within both bounds."""
    lru = LocalLRU(max_entries=max_entries, max_bytes=max_bytes)
    for key, size, delete in operations:
        if delete:
            lru.delete(key)
        else:
            lru.put(key, size, size_bytes=size, ttl_s=60)
        assert len(lru) <= max_entries
        assert lru.size_bytes <= max_bytes
        assert lru.size_bytes == sum(lru.get(k).size_bytes for k in list(lru._entries))  # type: ignore[union-attr]


def _fail() -> None:
    raise ConnectionError("refused")


def test_breaker_opens_after_consecutive_failures_and_fails_fast() -> None:
    """N consecutive outages open it; then calls fail without running."""
    clock = Clock()
    breaker = Breaker(failures=3, cooldown_s=1.0, clock=clock)
    for _ in range(3):
        with pytest.raises(TransientError):
            breaker.call(_fail)
    assert breaker.state == "open"
    ran: list[int] = []
    with pytest.raises(CircuitOpenError):
        breaker.call(lambda: ran.append(1))
    assert ran == []


def test_breaker_success_resets_the_count() -> None:
    """Failures must be consecutive."""
    breaker = Breaker(failures=2, cooldown_s=1.0, clock=Clock())
    with pytest.raises(TransientError):
        breaker.call(_fail)
    breaker.call(lambda: None)
    with pytest.raises(TransientError):
        breaker.call(_fail)
    assert breaker.state == "closed"


def test_breaker_half_open_probe_closes_or_reopens() -> None:
    """After the cooldown one probe runs: a failure reopens, a success closes."""
    clock = Clock()
    breaker = Breaker(failures=1, cooldown_s=1.0, clock=clock)
    with pytest.raises(TransientError):
        breaker.call(_fail)
    clock.now += 1.5
    assert breaker.state == "half_open"
    with pytest.raises(TransientError):
        breaker.call(_fail)
    assert breaker.state == "open"
    clock.now += 1.5
    assert breaker.call(lambda: 7) == 7
    assert breaker.state == "closed"


def test_breaker_reset_closes_it() -> None:
    """reset() closes an open breaker."""
    breaker = Breaker(failures=1, cooldown_s=60, clock=Clock())
    with pytest.raises(TransientError):
        breaker.call(_fail)
    breaker.reset()
    assert breaker.state == "closed"
