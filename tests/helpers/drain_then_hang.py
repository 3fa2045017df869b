"""A drainer that stops dead: like a real one it takes each shard's lease and reads only where
nothing is left pending (reading past another drainer's pending entries would commit later
seqs first, which no drainer does), reads a batch (and, with ``commit``, persists it), prints
READY, then hangs (its leases expire as a dead drainer's would) until the test SIGKILLs it,
before any XACK."""

from __future__ import annotations

import sys
import time

from config.settings import Settings
from core.client import redis_from_url
from core.log.drainer import Drainer
from core.store.db import make_engine
from core.store.lease import Lease


def main() -> None:
    stage = sys.argv[1]
    settings = Settings()
    drainer = Drainer(
        redis=redis_from_url(settings.redis_url),
        engine=make_engine(settings.database_url),
        settings=settings,
        consumer="doomed",
    )
    held = 0
    for shard in range(settings.shards):
        lease = Lease(
            drainer.redis, drainer.scripts.lease, drainer.keys.lease(shard), settings.drain_lease_ms
        )
        if not lease.acquire():
            continue  # a live drainer has this shard
        drainer.ensure_group(shard)
        if drainer._pending_count(shard):
            continue  # left by a dead drainer: reclaimed first, by whoever drains next
        entries = drainer.read_new(shard, count=settings.batch_size)
        if stage == "commit":
            drainer.persist(entries)
        held += len(entries)
    print(f"READY {held}", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
