"""Each backup's row index: for every row of a table, a keyed hash of its primary key and one
of its whole encoded row, sorted by the first.

An incremental diffs its snapshot against its parent's index: a row whose key is new or whose
row hash changed is written, and the parent's keys it did not see are its deletions. A restore
takes the newest index of the chain as the exact set of rows to rebuild. 16 bytes per row in
two ``array('Q')``, built in 256 buckets by the top byte so sorting never needs more than a
bucket's worth of Python objects: a million rows cost 16 MB, not a list of tuples.

The hashes are keyed (blake2b with the chain's index key, itself wrapped by the KEK): without
the key they say nothing about the ids they hash.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterator
from hashlib import blake2b

_BUCKETS = 256
# Entries per serialized frame (1 MiB of hashes).
FRAME_ENTRIES = 65_536


class RowHasher:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def key_hash(self, encoded_key: bytes) -> int:
        digest = blake2b(encoded_key, digest_size=8, key=self._key, person=b"pk").digest()
        return int.from_bytes(digest, "little")

    def row_hash(self, encoded_row: bytes) -> int:
        digest = blake2b(encoded_row, digest_size=8, key=self._key, person=b"row").digest()
        return int.from_bytes(digest, "little")


class IndexBuilder:
    """Collects (key hash, row hash) pairs in any order; ``finish`` sorts them."""

    def __init__(self) -> None:
        self._keys = [array("Q") for _ in range(_BUCKETS)]
        self._rows = [array("Q") for _ in range(_BUCKETS)]
        self.count = 0

    def add(self, key: int, row: int) -> None:
        bucket = key >> 56
        self._keys[bucket].append(key)
        self._rows[bucket].append(row)
        self.count += 1

    def finish(self) -> RowIndex:
        keys, rows = array("Q"), array("Q")
        for bucket in range(_BUCKETS):
            pairs = sorted(zip(self._keys[bucket], self._rows[bucket], strict=True))
            self._keys[bucket] = self._rows[bucket] = array("Q")  # freed as we go
            keys.extend(pair[0] for pair in pairs)
            rows.extend(pair[1] for pair in pairs)
        return RowIndex(keys, rows)


class RowIndex:
    """Sorted key hashes and, at the same positions, row hashes."""

    def __init__(self, keys: array[int], rows: array[int]) -> None:
        self.keys = keys
        self.rows = rows

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, key: int) -> int:
        """The position of ``key``, or -1."""
        position = bisect_left(self.keys, key)
        if position < len(self.keys) and self.keys[position] == key:
            return position
        return -1

    def has_collision(self) -> bool:
        """Two primary keys with one hash (about 1 in 10^7 for 10^6 rows): an index that
        cannot tell them apart must not be used; the next full backup draws a new key."""
        keys = self.keys
        return any(keys[i] == keys[i + 1] for i in range(len(keys) - 1))

    def payloads(self) -> Iterator[tuple[bytes, int]]:
        """(payload, entries) per frame: the keys then the rows, little-endian."""
        for start in range(0, len(self.keys), FRAME_ENTRIES):
            keys = self.keys[start : start + FRAME_ENTRIES]
            rows = self.rows[start : start + FRAME_ENTRIES]
            if sys.byteorder != "little":
                keys.byteswap()
                rows.byteswap()
            yield keys.tobytes() + rows.tobytes(), len(keys)

    @classmethod
    def from_payloads(cls, payloads: Iterator[tuple[bytes, int]]) -> RowIndex:
        keys, rows = array("Q"), array("Q")
        for payload, entries in payloads:
            if len(payload) != 16 * entries:
                raise ValueError(f"an index frame of {entries} entries holds {len(payload)} bytes")
            part_keys, part_rows = array("Q"), array("Q")
            part_keys.frombytes(payload[: 8 * entries])
            part_rows.frombytes(payload[8 * entries :])
            if sys.byteorder != "little":
                part_keys.byteswap()
                part_rows.byteswap()
            keys.extend(part_keys)
            rows.extend(part_rows)
        return cls(keys, rows)


def empty_index() -> RowIndex:
    return RowIndex(array("Q"), array("Q"))
