"""The in-process level: an LRU bounded by entries and by bytes, each entry with its own TTL.

A value's size is the length of its JSON encoding (what Redis stores too), so the byte bound
means the same thing in both levels. A value larger than the whole byte budget is not kept
locally at all: admitting it would evict everything else for one entry.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class LocalEntry:
    """One value held locally, with what validates it against Redis."""

    value: Any
    size_bytes: int
    expires_at: float
    # The key's version stamp and its tags' stamps when the value was written or read.
    stamp: str = ""
    tag_stamps: dict[str, str] = field(default_factory=dict)


class LocalLRU:
    """A thread-safe LRU of ``LocalEntry`` bounded by ``max_entries`` and ``max_bytes``."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be positive")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, LocalEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: str) -> LocalEntry | None:
        """The live entry for ``key`` (now the most recently used), or None; expired entries
        are dropped on the way."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(
        self,
        key: str,
        value: Any,
        *,
        size_bytes: int,
        ttl_s: float,
        stamp: str = "",
        tag_stamps: dict[str, str] | None = None,
    ) -> bool:
        """Keep ``value`` for ``ttl_s``; evict least recently used entries past either bound.
        False (and nothing kept, an older value dropped) when it alone exceeds ``max_bytes``."""
        with self._lock:
            if key in self._entries:
                self._drop(key)
            if size_bytes > self.max_bytes or ttl_s <= 0:
                return False
            self._entries[key] = LocalEntry(
                value, size_bytes, self._clock() + ttl_s, stamp, dict(tag_stamps or {})
            )
            self._bytes += size_bytes
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self.evictions += 1
            return True

    def delete(self, key: str) -> bool:
        with self._lock:
            if key not in self._entries:
                return False
            self._drop(key)
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size_bytes
