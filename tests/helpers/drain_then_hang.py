"""A drainer that stops dead: reads a batch from every shard (and, with ``commit``, persists
it), prints READY, then hangs until the test SIGKILLs it, before any XACK."""

from __future__ import annotations

import sys
import time

from config.settings import Settings
from core.client import redis_from_url
from core.log.drainer import Drainer
from core.store.db import make_engine


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
        drainer.ensure_group(shard)
        entries = drainer.read_new(shard, count=settings.batch_size)
        if stage == "commit":
            drainer.persist(entries)
        held += len(entries)
    print(f"READY {held}", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main()
