"""MemscribeStore on a real Redis: LangChain's own BaseStore suites (sync and async), then ours:
prefix walks over many pages and odd prefixes, bytes, isolation by tenant and namespace, TTLs,
cross-process invalidation against a second OS process, bad input, and an outage."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis
import redis.asyncio
from langchain_core.stores import BaseStore
from langchain_tests.integration_tests import BaseStoreAsyncTests, BaseStoreSyncTests
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.settings import Settings
from core.cache import Cache, CacheNamespace, CircuitOpenError
from core.cache.codec import encode_tagged
from core.cache.plans import MAX_KEY_BYTES
from core.errors import TransientError, ValidationError
from core.integrations.langchain import MemscribeStore
from core.store.connections import async_redis_from_url
from tests.conftest import REDIS_URL
from tests.helpers.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
# One of each kind LangChain stores hold: bytes (a ByteStore), a JSON object, text.
THREE = (b"\x00embedding\xff", {"page_content": "doc", "$b": ["tagged?", b"no"]}, "plain é")


def _settings(**overrides: Any) -> Settings:
    return Settings(redis_url=REDIS_URL, **overrides)


def _store(redis_client: redis.Redis, **options: Any) -> MemscribeStore[Any]:
    # An async client that is never used opens no connection: the sync tests need no cleanup.
    return MemscribeStore(redis=redis_client, settings=_settings(), **options)


class TestSyncConformance(BaseStoreSyncTests[Any]):
    @pytest.fixture
    def kv_store(self, redis_client: redis.Redis) -> BaseStore[str, Any]:
        return _store(redis_client)

    @pytest.fixture
    def three_values(self) -> tuple[Any, Any, Any]:
        return THREE


@pytest_asyncio.fixture
async def async_client(redis_client: redis.Redis) -> AsyncIterator[redis.asyncio.Redis]:
    """A redis.asyncio client of this test's event loop (the database is flushed)."""
    client = async_redis_from_url(REDIS_URL)
    yield client
    await client.aclose()


class TestAsyncConformance(BaseStoreAsyncTests[Any]):
    # The suite's tests are unmarked coroutines and pytest-asyncio runs in strict mode here:
    # mark the class. Its one sync test (langchain_tests' override check) then draws
    # pytest-asyncio's "not an async function" warning, which is silenced for it alone.
    pytestmark = [
        pytest.mark.asyncio,
        pytest.mark.filterwarnings(
            "ignore:The test <Function test_no_overrides_DO_NOT_OVERRIDE> is marked"
            ":pytest.PytestWarning"
        ),
    ]

    @pytest_asyncio.fixture
    async def kv_store(
        self, redis_client: redis.Redis, async_client: redis.asyncio.Redis
    ) -> BaseStore[str, Any]:
        return _store(redis_client, async_redis=async_client)

    @pytest.fixture
    def three_values(self) -> tuple[Any, Any, Any]:
        return THREE


def test_each_batch_is_one_round_trip(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mset, mget (keys held locally and not, together) and mdelete: one command each."""
    store = _store(redis_client)
    store.mset([("warm", 1)])
    _store(redis_client).mset([("cold", 2)])  # another store's write: not held by this one
    store.mdelete(["never-set"])  # every script loaded (a fresh Redis answers NOSCRIPT once)
    store.mget(["never-set"])
    sent: list[str] = []
    real = redis_client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(redis_client, "execute_command", counting)
    assert store.mget(["warm", "cold", "none"]) == [1, 2, None]
    store.mset([(f"k{i}", i) for i in range(100)])
    store.mdelete(["warm", "cold", "k1"])
    assert sent == ["EVALSHA", "EVALSHA", "EVALSHA"]
    assert store.stats.local.hits == 1 and store.stats.redis.hits == 1


@pytest.mark.asyncio
async def test_async_methods_are_native_not_the_sync_ones_in_an_executor(
    redis_client: redis.Redis, async_client: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """amget/amset/amdelete/ayield_keys run on redis.asyncio: with every sync method broken
    they still work."""
    store = _store(redis_client, async_redis=async_client)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a sync method was called")

    for name in ("mget", "mset", "mdelete", "yield_keys"):
        monkeypatch.setattr(store, name, broken)
    monkeypatch.setattr(store.cache.redis, "evalsha", broken)
    await store.amset([("k", b"v"), ("j", 1)])
    assert await store.amget(["k", "j"]) == [b"v", 1]
    await store.amdelete(["j"])
    assert [key async for key in store.ayield_keys(prefix="k")] == ["k"]


# --- prefix walks ----------------------------------------------------------------------------
def test_yield_keys_walks_many_pages_in_byte_order(redis_client: redis.Redis) -> None:
    """1,201 keys (three index pages): every key once, in UTF-8 byte order, per prefix."""
    store = _store(redis_client)
    keys = [f"doc:{i:04d}" for i in range(1000)] + [f"img:{i}" for i in range(200)] + ["z"]
    store.mset([(key, i) for i, key in enumerate(keys)])
    walked = list(store.yield_keys())
    assert walked == sorted(keys, key=str.encode)
    assert len(list(store.yield_keys(prefix="doc:"))) == 1000
    assert sorted(store.yield_keys(prefix="doc:09")) == [f"doc:09{i:02d}" for i in range(100)]
    assert list(store.yield_keys(prefix="img:19")) == ["img:19"] + [f"img:19{i}" for i in range(10)]
    assert list(store.yield_keys(prefix="nothing")) == []


@pytest.mark.parametrize("page_size", [1, 2, 3, 7])
def test_page_edges_never_skip_or_repeat(redis_client: redis.Redis, page_size: int) -> None:
    """Pages that end exactly on a prefix's last key, or on the range's end, lose nothing."""
    cache = Cache(redis=redis_client, settings=_settings())
    namespace = CacheNamespace(cache=cache, page_size=page_size)
    keys = ["a", "ab", "abc", "abd", "ac", "b", "ba"]
    namespace.set_many([(key, key) for key in keys])
    for prefix in (None, "a", "ab", "abc", "b", "c"):
        expected = [key for key in keys if key.startswith(prefix or "")]
        assert list(namespace.iter_keys(prefix)) == expected, prefix


ODD_KEYS = [
    "a",
    "a*",
    "a*b",
    "a?",
    "a[x]",
    "a[",
    "a]",
    "a\\",
    "a\x00nul",
    "a\x7f",
    "a\u00ff",  # C3 BF: where a prefix + "\xff" text bound would stop
    "a\u0100",  # C4 80: just past it
    "a\u07ff",
    "a\uffff",
    "a\U0001f600",  # 4 bytes
    "a\U0010ffff",
    "*",
    "?",
    "[",
    "é",
    "éa",
    "\U0010ffff",
    "b",
]


@pytest.mark.parametrize(
    "prefix",
    ["a", "a*", "a?", "a[", "a\\", "a\x00", "a\u00ff", "a\u0100", "\U0010ffff", "*", "[", "é"],
)
def test_odd_prefixes_match_exactly_the_keys_that_start_with_them(
    redis_client: redis.Redis, prefix: str
) -> None:
    """Glob characters, NUL, and prefixes whose bytes end in C3 BF or F4 8F BF BF select
    exactly the keys that start with them (no pattern, no byte-order slip)."""
    store = _store(redis_client)
    store.mset([(key, key) for key in ODD_KEYS])
    expected = sorted((key for key in ODD_KEYS if key.startswith(prefix)), key=str.encode)
    assert list(store.yield_keys(prefix=prefix)) == expected


@pytest.mark.asyncio
async def test_async_walk_pages_and_odd_prefixes(
    redis_client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    """ayield_keys pages like yield_keys (a native async generator on redis.asyncio)."""
    store = _store(redis_client, async_redis=async_client)
    keys = [f"k{i:04d}" for i in range(1100)] + ODD_KEYS
    await store.amset([(key, 1) for key in keys])
    assert [key async for key in store.ayield_keys()] == sorted(set(keys), key=str.encode)
    assert [key async for key in store.ayield_keys(prefix="a\u00ff")] == ["a\u00ff"]
    assert len([key async for key in store.ayield_keys(prefix="k1")]) == 100


# --- values ----------------------------------------------------------------------------------
def test_bytes_and_json_round_trip_through_redis(redis_client: redis.Redis) -> None:
    """Every byte value, empty and large bytes, nested bytes, '$' keys: the same values come
    back from Redis (a fresh store, nothing local) and from the local level."""
    values = {
        "all-bytes": bytes(range(256)),
        "empty": b"",
        "large": os.urandom(300_000),
        "bytearray": bytearray(b"ba"),
        "nested": {"vec": [b"\x01", {"deep": b"\x02"}], "n": 1.5, "t": None, "ok": True},
        "dollar": {"$b": "not bytes", "$$": 1, "$": [], "plain": "x"},
        "tagged-lookalike": [{"$b": "AAAA"}],
        "text": "ünïcödé \U0001f600",
        "number": 0,
        "list": [],
    }
    writer = _store(redis_client)
    writer.mset(list(values.items()))
    expected = {**values, "bytearray": b"ba"}
    reader = _store(redis_client)  # its own local level: every value is read from Redis
    assert reader.mget(list(values)) == list(expected.values())
    assert reader.mget(list(values)) == list(expected.values())  # now from the local level
    assert reader.stats.local.hits == len(values)
    raw = redis_client.get(writer.cache.keys.cache_value(writer._sync.spec.entry("empty")))
    assert raw == '{"$b":""}'  # JSON with tagged base64, never pickle


# --- isolation -------------------------------------------------------------------------------
def test_tenants_and_namespaces_are_isolated(redis_client: redis.Redis) -> None:
    """The same key in three stores: three values, three walks, deletes that stay put."""
    stores = {
        ("acme", "docs"): _store(redis_client, tenant="acme", namespace="docs"),
        ("acme", "embeddings"): _store(redis_client, tenant="acme", namespace="embeddings"),
        ("globex", "docs"): _store(redis_client, tenant="globex", namespace="docs"),
    }
    for (tenant, namespace), store in stores.items():
        store.mset([("k", f"{tenant}/{namespace}"), (f"only-{tenant}-{namespace}", 1)])
    for (tenant, namespace), store in stores.items():
        assert store.mget(["k"]) == [f"{tenant}/{namespace}"]
        assert list(store.yield_keys()) == ["k", f"only-{tenant}-{namespace}"]
    stores["acme", "docs"].mdelete(["k"])
    assert stores["acme", "docs"].mget(["k"]) == [None]
    assert stores["acme", "embeddings"].mget(["k"]) == ["acme/embeddings"]
    assert stores["globex", "docs"].mget(["k"]) == ["globex/docs"]
    # A Cache key that looks like an entry's name is a different key.
    cache = Cache(redis=redis_client, settings=_settings())
    with pytest.raises(ValidationError):
        cache.set("~acme:docs:6b", "x")


@pytest.mark.parametrize("bad", ["", "a:b", "a b", "*", "x" * 200, "{cache}"])
def test_tenant_and_namespace_are_ids(redis_client: redis.Redis, bad: str) -> None:
    """Tenant and namespace become key parts: ids only (ValidationError naming them)."""
    with pytest.raises(ValidationError) as tenant:
        _store(redis_client, tenant=bad)
    with pytest.raises(ValidationError) as namespace:
        _store(redis_client, namespace=bad)
    assert (tenant.value.field, namespace.value.field) == ("tenant", "namespace")


def test_from_settings_builds_its_clients(redis_client: redis.Redis) -> None:
    """from_settings: the configured Redis, namespace, tenant and TTL."""
    store = MemscribeStore.from_settings(_settings(), namespace="n", tenant="t", ttl_s=60)
    store.mset([("k", b"v")])
    assert _store(redis_client, namespace="n", tenant="t").mget(["k"]) == [b"v"]
    value_key = store.cache.keys.cache_value(store._sync.spec.entry("k"))
    assert 0 < redis_client.pttl(value_key) <= 60_000
    store.close()


# --- expiry ----------------------------------------------------------------------------------
def test_ttl_expires_values_and_the_walk_prunes_their_index_entries(
    redis_client: redis.Redis,
) -> None:
    """ttl_s: values go, the next walk neither lists them nor keeps them in the index; a value
    without expiry keeps the index alive."""
    short = _store(redis_client, namespace="n", ttl_s=0.2)
    forever = _store(redis_client, namespace="n")
    short.mset([("gone-1", 1), ("gone-2", 2)])
    forever.mset([("kept", 3)])
    index = short._sync.spec.index
    assert redis_client.pttl(index) == -1  # holds an entry without expiry
    time.sleep(0.4)
    assert short.mget(["gone-1", "kept"]) == [None, 3]
    assert list(short.yield_keys()) == ["kept"]
    assert redis_client.zrange(index, 0, -1) == ["kept"]

    alone = _store(redis_client, namespace="ttl-only", ttl_s=30)
    alone.mset([("k", 1)])
    assert 0 < redis_client.pttl(alone._sync.spec.index) <= 30_000


# --- cross-process invalidation --------------------------------------------------------------
def _in_process_b(tenant: str, namespace: str, action: str, payload: str) -> None:
    """Run one store call in another OS process and wait for it to return."""
    command = [sys.executable, "-m", "tests.helpers.store_writer", REDIS_URL]
    done = subprocess.run(
        [*command, tenant, namespace, action, payload],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def test_another_process_mset_and_mdelete_are_never_read_stale(redis_client: redis.Redis) -> None:
    """A holds both keys locally; B overwrites one and deletes the other and exits; A's next
    mget sees both changes (the stamps it checks are B's)."""
    store = _store(redis_client, tenant="t1", namespace="shared")
    store.mset([("a", b"old-a"), ("b", {"v": "old-b"})])
    assert store.mget(["a", "b"]) == [b"old-a", {"v": "old-b"}]
    assert store.stats.local.hits == 2  # both held locally

    _in_process_b("t1", "shared", "mset", encode_tagged([["a", b"new-a"]])[0])
    _in_process_b("t1", "shared", "mdelete", json.dumps(["b"]))

    assert store.mget(["a", "b"]) == [b"new-a", None]
    assert store.stats.stale == 2
    assert list(store.yield_keys()) == ["a"]


@pytest.mark.asyncio
async def test_async_reads_see_another_process_writes(
    redis_client: redis.Redis, async_client: redis.asyncio.Redis
) -> None:
    """The same promise on the async path: a local copy never hides B's write."""
    store = _store(redis_client, tenant="t1", namespace="shared", async_redis=async_client)
    await store.amset([("a", 1)])
    assert await store.amget(["a"]) == [1]
    await asyncio.to_thread(_in_process_b, "t1", "shared", "mset", json.dumps([["a", 2]]))
    assert await store.amget(["a"]) == [2]
    assert store.stats.stale == 1


# --- bad input -------------------------------------------------------------------------------
def _snapshot(redis_client: redis.Redis) -> dict[str, Any]:
    snapshot: dict[str, Any] = {}
    for key in redis_client.scan_iter(count=1000):  # the test's own database, no pattern
        snapshot[key] = redis_client.dump(key)
    return snapshot


BAD_BATCHES = [
    ([("ok", 1), ("", 2)], "key", "must not be empty"),
    ([("ok", 1), ("k" * (MAX_KEY_BYTES + 1), 2)], "key", "at most 1000 bytes"),
    ([("ok", 1), ("é" * 501, 2)], "key", "at most 1000 bytes"),  # 1,002 bytes of UTF-8
    ([("ok", 1), (7, 2)], "key", "must be a string"),
    ([("ok", 1), ("\ud800", 2)], "key", "valid Unicode"),
    ([("ok", 1), ("v", b"x" * 800_000)], "value", "at most 1048576 bytes"),
    ([("ok", 1), ("v", {1, 2})], "value", "JSON"),
    ([("ok", 1), ("v", float("nan"))], "value", "JSON"),
    ([("ok", 1), ("v", "\udfff")], "value", "valid Unicode"),
    ([("ok", 1), ("v", None)], "value", "None"),
    ([("ok", 1), ("v",)], "key_value_pairs", "(key, value)"),
    ([("ok", 1), "kv"], "key_value_pairs", "(key, value)"),
]


@pytest.mark.parametrize(("pairs", "field", "says"), BAD_BATCHES)
def test_a_bad_batch_raises_naming_the_field_and_writes_nothing(
    redis_client: redis.Redis, pairs: list[Any], field: str, says: str
) -> None:
    """One bad pair: ValidationError naming the field and the limit; Redis unchanged, and the
    local copy of a good key of the batch still reads the old value."""
    store = _store(redis_client)
    store.mset([("ok", 0)])
    before = _snapshot(redis_client)
    with pytest.raises(ValidationError) as raised:
        store.mset(pairs)
    assert raised.value.field == field and says in str(raised.value)
    assert _snapshot(redis_client) == before
    assert store.mget(["ok"]) == [0]


def test_limits_are_inclusive_and_bad_keys_fail_reads_and_deletes_too(
    redis_client: redis.Redis,
) -> None:
    """A key of exactly 1,000 bytes and a value of exactly the limit are stored; a bad key in
    mget, mdelete or a prefix raises before anything is sent."""
    store = _store(redis_client, max_value_bytes=100)
    longest = "é" * 500  # 1,000 bytes
    value = "x" * 98  # '"' + 98 + '"'
    store.mset([(longest, value)])
    assert store.mget([longest]) == [value]
    assert list(store.yield_keys(prefix=longest)) == [longest]
    with pytest.raises(ValidationError, match="at most 100 bytes"):
        store.mset([("k", value + "x")])
    for call in (store.mget, store.mdelete):
        with pytest.raises(ValidationError):
            call([longest, longest + "x"])
        with pytest.raises(ValidationError, match="not a single string"):
            call("abc")  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as prefix:
        list(store.yield_keys(prefix="\ud800"))
    assert prefix.value.field == "prefix"
    assert store.mget([longest]) == [value]


def test_empty_batches_send_nothing(redis_client: redis.Redis) -> None:
    """mget([]) is [], mset([]) and mdelete([]) are no-ops (and no round trip)."""
    store = _store(redis_client)
    store.mset([])
    store.mdelete([])
    assert store.mget([]) == []
    assert redis_client.dbsize() == 0


# --- outage ----------------------------------------------------------------------------------
@pytest.fixture
def proxy(redis_client: redis.Redis) -> Iterator[TcpProxy]:
    target = urlsplit(REDIS_URL)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    yield tcp
    tcp.close()


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_outage_serves_only_fully_local_reads_and_fails_writes(proxy: TcpProxy) -> None:
    """Redis cut off: a read of keys all held locally answers (degraded); one that needs Redis
    raises TransientError instead of calling a key missing; writes fail; sync and async
    share one breaker; Redis back: it closes."""
    db = urlsplit(REDIS_URL).path.lstrip("/") or "0"
    url = f"redis://127.0.0.1:{proxy.port}/{db}"
    # docs/cache.md's advice for the cache's clients: short timeouts, no client-side retries.
    quick: dict[str, Any] = {"socket_timeout": 0.5, "socket_connect_timeout": 0.5}
    settings = Settings(redis_url=url, breaker_failures=1, breaker_cooldown_s=0.5)
    sync_client = redis.Redis.from_url(
        url, decode_responses=True, retry=Retry(NoBackoff(), 0), **quick
    )
    async_client = async_redis_from_url(url, retry=AsyncRetry(NoBackoff(), 0), **quick)
    store = MemscribeStore(redis=sync_client, settings=settings, async_redis=async_client)
    store.mset([("held", b"1")])

    proxy.cut()
    with pytest.raises(TransientError):
        store.mget(["held", "never-read"])
    assert store.cache.breaker.state == "open"
    assert store.mget(["held"]) == [b"1"]
    assert await store.amget(["held", "held"]) == [b"1", b"1"]
    with pytest.raises(TransientError):
        await store.amget(["never-read"])
    with pytest.raises(CircuitOpenError):
        await store.amset([("held", b"2")])
    with pytest.raises(CircuitOpenError):
        list(store.yield_keys())
    assert store.stats.degraded_reads == 2  # per distinct key read

    proxy.restore()
    deadline = time.monotonic() + 20
    while True:  # no timing assert: the next read after the cooldown is the probe
        assert time.monotonic() < deadline, "the breaker did not close"
        try:
            assert await store.amget(["never-read"]) == [None]
            break
        except TransientError:
            await asyncio.sleep(0.1)
    assert store.cache.breaker.state == "closed"
    # The failed amset dropped the local copy first; Redis's value is what reads back.
    assert store.mget(["held"]) == [b"1"]
    await async_client.aclose()
    sync_client.close()
