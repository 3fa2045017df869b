"""A thread's checkpoint keys in Redis: the slot of its session (``{<shard>}``), so every
checkpoint script touches one slot and appends to that shard's WAL."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from core.store.keys import Keys

# A thread's delete floor outlives its data in Redis for this long, so a reader hides rows the
# store still holds until the drainers have carried the floor there (they take seconds).
CLOCK_TTL_S = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class CheckpointKeys:
    tenant: str
    thread_id: str
    shard: int
    # zset (score 0) of "<ns>\0<checkpoint id>": a namespace's checkpoints in id order.
    index: str
    # hash "<ns>\0<checkpoint id>" -> the record JSON (codec.py).
    records: str
    # hash "<ns>\0<channel>\0<version>" -> "<serde type>|<base64>".
    blobs: str
    # hash "<ns>\0<checkpoint id>\0<task id>\0<idx>" -> the write JSON, and its zset index.
    writes: str
    write_index: str
    # hash: "hw" the newest write's time, "floor" the last delete_thread's (microseconds).
    clock: str
    wal: str
    tenant_bytes: str
    pressure: str
    # The shard's set of the tenant's threads with checkpoints (erase_tenant's index).
    tenant_threads: str
    # The slot's tag: run_threads(run_id) is delete_for_runs' index of the run in this shard.
    prefix: str

    def all(self) -> list[str]:
        """The keys in the order the checkpoint scripts take them."""
        return [
            self.index,
            self.records,
            self.blobs,
            self.writes,
            self.write_index,
            self.clock,
            self.wal,
            self.tenant_bytes,
            self.pressure,
            self.tenant_threads,
        ]

    def run_threads(self, run_id: str) -> str:
        return _run_key(self.prefix, self.tenant, run_id)

    def subject_threads(self, subject_id: str) -> str:
        return f"{self.prefix}:cps:{self.tenant}:{subject_id}"

    def data(self) -> list[str]:
        """The keys that hold checkpoint data (what a delete removes)."""
        return [self.index, self.records, self.blobs, self.writes, self.write_index]


def checkpoint_keys(keys: Keys, tenant: str, thread_id: str) -> CheckpointKeys:
    session = keys.session(tenant, thread_id)
    base = session.meta.removesuffix(":meta") + ":cp"
    return CheckpointKeys(
        tenant=tenant,
        thread_id=thread_id,
        shard=session.shard,
        index=f"{base}:ix",
        records=f"{base}:rec",
        blobs=f"{base}:blob",
        writes=f"{base}:w",
        write_index=f"{base}:wix",
        clock=f"{base}:clock",
        wal=session.wal,
        tenant_bytes=session.tenant_bytes,
        pressure=session.pressure,
        tenant_threads=tenant_threads_key(keys, session.shard, tenant),
        prefix=keys.tag(session.shard),
    )


def tenant_threads_key(keys: Keys, shard: int, tenant: str) -> str:
    return f"{keys.tag(shard)}:cpt:{tenant}"


def run_threads_key(keys: Keys, shard: int, tenant: str, run_id: str) -> str:
    """The shard's set of the tenant's threads with checkpoints of ``run_id``. The key holds a
    digest of the run id: any string names a key of fixed shape, never a pattern."""
    return _run_key(keys.tag(shard), tenant, run_id)


def subject_threads_key(keys: Keys, shard: int, tenant: str, subject_id: str) -> str:
    """The shard's set of the tenant's threads about ``subject_id`` (a checked id)."""
    return f"{keys.tag(shard)}:cps:{tenant}:{subject_id}"


def _run_key(tag: str, tenant: str, run_id: str) -> str:
    digest = hashlib.blake2b(run_id.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"{tag}:cpr:{tenant}:{digest}"
