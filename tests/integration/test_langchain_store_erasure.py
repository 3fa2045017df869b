"""erase_tenant reaches the LangChain store: every namespace of the tenant is emptied at the
request (values, stamps, index), a local copy in another store object is not served again,
and the other tenant's namespaces and the plain cache stay."""

from __future__ import annotations

from core.cache.multilevel import Cache
from core.client import MemoryClient
from core.integrations.langchain import MemscribeStore


class Sent:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[str]]] = []

    def __call__(self, name: str, args: list[str]) -> None:
        self.tasks.append((name, args))


def test_erase_tenant_empties_its_store_namespaces(client: MemoryClient) -> None:
    client._enqueue = Sent()
    docs = MemscribeStore(
        redis=client.redis, settings=client.settings, tenant="t1", namespace="docs"
    )
    vectors = MemscribeStore(
        redis=client.redis, settings=client.settings, tenant="t1", namespace="emb"
    )
    other = MemscribeStore(
        redis=client.redis, settings=client.settings, tenant="t2", namespace="docs"
    )
    reader = MemscribeStore(
        redis=client.redis, settings=client.settings, tenant="t1", namespace="docs"
    )
    docs.mset([(f"doc:{i}", {"text": f"t1 secret {i}"}) for i in range(1200)])
    vectors.mset([("v", b"\x00\x01")])
    other.mset([("doc:0", {"text": "t2 keeps this"})])
    plain = Cache(redis=client.redis, settings=client.settings)
    plain.set("profile:ann", {"plan": "pro"})
    assert reader.mget(["doc:0"]) == [{"text": "t1 secret 0"}]  # now held locally too

    receipt = client.erase_tenant("t1", request_id="req-store")
    assert receipt.counts["barred"]["cache"] >= 1201

    assert reader.mget(["doc:0", "doc:1199"]) == [None, None]
    assert docs.mget(["doc:5"]) == [None]
    assert list(docs.yield_keys()) == []
    assert vectors.mget(["v"]) == [None]
    assert other.mget(["doc:0"]) == [{"text": "t2 keeps this"}]
    assert plain.get("profile:ann") == {"plan": "pro"}
    docs.mset([("doc:new", {"text": "after the request"})])  # new data is kept
    assert list(docs.yield_keys()) == ["doc:new"]
