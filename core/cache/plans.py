"""A cache namespace's Redis calls as data: what to send and how to read the reply.

Pure functions, no client: ``core/cache/namespace.py`` runs the same ``Call`` on a
``redis.Redis`` (sync) or a ``redis.asyncio.Redis`` (async), so key naming, encoding,
validation, chunking and reply parsing exist once for both.

A namespace (one tenant's, one name) holds arbitrary string keys. They cannot be part of a
Redis key name as they are, so an entry is named by the hex of the key's UTF-8
(``Keys.cache_entry``) under the cache's value and stamp shapes, and the keys as given are
the members of the namespace's index, a zset with every score 0: a prefix walk is
``ZRANGEBYLEX`` over it, never a ``SCAN MATCH`` pattern built from input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from core.cache.codec import encode_tagged, utf8_size
from core.errors import ValidationError
from core.models import validate_id
from core.store.keys import Keys

# A key is a Redis zset member and, hex'd, part of two key names (2 x 2,000 characters).
MAX_KEY_BYTES: Final = 1_000
# A value's tagged JSON (bytes count 4/3 as base64); a store may lower or raise it.
MAX_VALUE_BYTES: Final = 1_048_576
# A large batch goes in several calls, each atomic, so one mset of 100,000 embeddings does not
# hold Redis (and every append behind it) for seconds in a single script.
CHUNK_ENTRIES: Final = 500
CHUNK_BYTES: Final = 4 * 1_048_576
PAGE_SIZE: Final = 500

CURRENT: Final = "current"  # parse_read: the caller's local copy is still the stored one


@dataclass(frozen=True, slots=True)
class Call:
    """One EVALSHA: a script of core/lua, its keys and arguments."""

    script: str
    keys: list[str]
    args: list[str | bytes | int]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A checked entry ready to write: the key as given, its tagged JSON and its size."""

    key: str
    text: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class Fresh:
    """An entry read from Redis: its JSON, its stamp and its TTL (None: no expiry)."""

    text: str
    stamp: str
    ttl_ms: int | None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of the index: how many members were read, the last one (the next page starts
    after it), and those whose value is still there."""

    read: int
    last: str | None
    live: list[str]


@dataclass(frozen=True, slots=True)
class Namespace:
    """One tenant's namespace of the cache, with its TTL (None: no expiry) and value limit."""

    keys: Keys
    tenant: str
    name: str
    ttl_s: float | None = None
    max_value_bytes: int = MAX_VALUE_BYTES

    @classmethod
    def of(
        cls,
        keys: Keys,
        *,
        tenant: str,
        name: str,
        ttl_s: float | None = None,
        max_value_bytes: int = MAX_VALUE_BYTES,
    ) -> Namespace:
        validate_id("tenant", tenant)
        validate_id("namespace", name)
        if ttl_s is not None and not ttl_s > 0:
            raise ValidationError("ttl_s", f"must be positive or None (no expiry), got {ttl_s}")
        if max_value_bytes < 1:
            raise ValidationError("max_value_bytes", f"must be positive, got {max_value_bytes}")
        return cls(keys, tenant, name, ttl_s, max_value_bytes)

    @property
    def index(self) -> str:
        return self.keys.cache_index(self.tenant, self.name)

    def entry(self, key: str) -> str:
        """The cache name of ``key`` (also its name in the local level)."""
        return self.keys.cache_entry(self.tenant, self.name, key.encode("utf-8").hex())

    @property
    def ttl_ms(self) -> int:
        """The TTL as the write script takes it (0: no expiry)."""
        return 0 if self.ttl_s is None else max(1, int(self.ttl_s * 1000))

    def entry_keys(self, key: str) -> tuple[str, str]:
        """The value and stamp keys of ``key``."""
        name = self.entry(key)
        return self.keys.cache_value(name), self.keys.cache_stamp(name)


# --- validation ------------------------------------------------------------------------------
def check_key(key: object, *, field: str = "key") -> str:
    """A key: a non-empty string of at most ``MAX_KEY_BYTES`` bytes of valid UTF-8."""
    if not isinstance(key, str):
        raise ValidationError(field, f"must be a string, got {type(key).__name__}")
    if not key:
        raise ValidationError(field, "must not be empty")
    size = utf8_size(field, key)
    if size > MAX_KEY_BYTES:
        raise ValidationError(field, f"must be at most {MAX_KEY_BYTES} bytes of UTF-8, got {size}")
    return key


def check_keys(keys: Sequence[str]) -> list[str]:
    """The distinct keys of a batch, first occurrence first; the whole batch is checked before
    anything is sent."""
    if isinstance(keys, str | bytes):  # a lone key iterates as characters: never what's meant
        raise ValidationError("keys", "must be a sequence of keys, not a single string")
    return list(dict.fromkeys(check_key(key) for key in keys))


def encode_pairs(pairs: Iterable[tuple[str, Any]], *, max_value_bytes: int) -> list[Encoded]:
    """A batch of (key, value) checked and encoded; a key given twice keeps its last value.
    ``ValidationError`` names the first bad key or value (nothing of the batch is written)."""
    latest: dict[str, Any] = {}
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValidationError("key_value_pairs", "must hold (key, value) pairs")
        key, value = pair
        latest.pop(check_key(key), None)  # re-insert: the batch's order is its last writes'
        latest[key] = value
    encoded = []
    for key, value in latest.items():
        if value is None:
            raise ValidationError("value", f"None is read back as missing: not storable ({key!r})")
        text, size = encode_tagged(value)
        if size > max_value_bytes:
            raise ValidationError(
                "value",
                f"must be at most {max_value_bytes} bytes as tagged JSON, got {size} "
                f"(key {key[:40]!r})",
            )
        encoded.append(Encoded(key, text, size))
    return encoded


def _chunks(items: Sequence[Any], sizes: Sequence[int] | None = None) -> Iterator[Sequence[Any]]:
    start, total = 0, 0
    for i in range(len(items)):
        size = sizes[i] if sizes is not None else 0
        if i > start and (i - start >= CHUNK_ENTRIES or total + size > CHUNK_BYTES):
            yield items[start:i]
            start, total = i, 0
        total += size
    if start < len(items):
        yield items[start:]


# --- calls and replies -------------------------------------------------------------------------
def read_calls(ns: Namespace, keys: Sequence[str], local_stamps: Sequence[str]) -> list[Call]:
    """``cache_mget`` for ``keys`` (distinct, checked), ``local_stamps[i]`` the stamp of this
    process's copy of ``keys[i]`` ("" when it holds none)."""
    calls = []
    for chunk in _chunks(range(len(keys))):
        names = [name for i in chunk for name in ns.entry_keys(keys[i])]
        calls.append(Call("cache_mget", names, [local_stamps[i] for i in chunk]))
    return calls


def parse_read(reply: list[Any]) -> list[Fresh | str | None]:
    """Per entry: None (missing), ``CURRENT`` (the local copy stands) or the ``Fresh`` one."""
    found: list[Fresh | str | None] = []
    for item in reply:
        if item == 0:
            found.append(None)
        elif item == 1:
            found.append(CURRENT)
        else:
            text, stamp, ttl_ms = item
            found.append(Fresh(_text(text), _text(stamp), int(ttl_ms) if int(ttl_ms) > 0 else None))
    return found


def write_calls(ns: Namespace, entries: Sequence[Encoded], stamps: Sequence[str]) -> list[Call]:
    """``cache_mset`` for ``entries`` with their new ``stamps``, chunked."""
    calls = []
    for chunk in _chunks(range(len(entries)), [entry.size_bytes for entry in entries]):
        keys = [ns.index, ns.keys.cache_tenant_namespaces(ns.tenant)]
        args: list[str | bytes | int] = [ns.ttl_ms, ns.name]
        for i in chunk:
            keys.extend(ns.entry_keys(entries[i].key))
            args.extend((entries[i].key, entries[i].text, stamps[i]))
        calls.append(Call("cache_mset", keys, args))
    return calls


def delete_calls(ns: Namespace, keys: Sequence[str]) -> list[Call]:
    """``cache_mdelete`` for ``keys`` (distinct, checked), chunked."""
    calls = []
    for chunk in _chunks(keys):
        names = [name for key in chunk for name in ns.entry_keys(key)]
        calls.append(Call("cache_mdelete", [ns.index, *names], list(chunk)))
    return calls


def lex_range(prefix: str | None) -> tuple[bytes, bytes]:
    """The ZRANGEBYLEX bounds of the members that start with ``prefix``, as bytes.

    Members sort by their bytes (memcmp), so the exclusive upper bound is the prefix's UTF-8
    with its last byte incremented (trailing 0xFF bytes dropped first, which makes it exact
    for any bytes; UTF-8 itself never holds 0xFF). Built from text instead, ``prefix + "\\xff"``
    would be U+00FF, the bytes C3 BF, and miss every key that goes on past U+00FF.
    """
    if not prefix:
        return b"-", b"+"
    raw = check_key(prefix, field="prefix").encode("utf-8")
    stripped = raw.rstrip(b"\xff")
    if not stripped:
        return b"[" + raw, b"+"
    return b"[" + raw, b"(" + stripped[:-1] + bytes([stripped[-1] + 1])


def page_call(ns: Namespace, low: bytes, high: bytes, *, page_size: int = PAGE_SIZE) -> Call:
    """``cache_index_page``: up to ``page_size`` members from ``low`` to ``high``."""
    value_prefix = ns.keys.cache_value(ns.keys.cache_entry(ns.tenant, ns.name, ""))
    return Call("cache_index_page", [ns.index], [low, high, page_size, value_prefix])


def parse_page(reply: list[Any]) -> Page:
    read, last, live = reply
    return Page(int(read), None if last is None else _text(last), [_text(m) for m in live])


def after(member: str) -> bytes:
    """The lex bound that starts the next page just after ``member``."""
    return b"(" + member.encode("utf-8")


def _text(value: bytes | str) -> str:
    # The async client may be built without decode_responses: replies are bytes then.
    return value.decode("utf-8") if isinstance(value, bytes) else value
