"""Every section of the benchmark, in the order they run.

To add one (summarization calls per crossing, erasure time per 100k records, backup rows/s):
write ``bench/sections/<name>.py`` exposing ``SECTION = Section(key, title, run)`` where
``run(ctx)`` returns its figures, and append it to ``SECTIONS``. A section starts the
processes it needs (``bench.pipeline``) and leaves the stores reusable.
"""

from __future__ import annotations

from bench.section import Section
from bench.sections import (
    append_cold,
    append_latency,
    backup,
    cache,
    checkpoints,
    durable_throughput,
    encryption,
    history,
    idle_cost,
    lag,
    memories,
    memory_similarity,
    network_hop,
    purge,
    redis_memory,
    state,
    summarization,
)

SECTIONS: list[Section] = [
    # No worker runs during the first two: appends pile up in Redis, nothing competes for CPU.
    append_latency.SECTION,
    append_cold.SECTION,
    network_hop.SECTION,
    redis_memory.SECTION,
    durable_throughput.SECTION,
    lag.SECTION,
    summarization.SECTION,
    idle_cost.SECTION,
    memories.SECTION,
    history.SECTION,
    state.SECTION,
    # LangGraph checkpoints (core/checkpoints): put beside PostgresSaver and SqliteSaver.
    checkpoints.SECTION,
    # No store: labelled pairs only.
    memory_similarity.SECTION,
    # The cache's levels (core/cache).
    cache.SECTION,
    # Retention (core/retention): 1M expired messages purged while appends go on.
    purge.SECTION,
    # What sealing content costs the drain (core/crypto).
    encryption.SECTION,
    # Backups (core/backups): 1M rows backed up and restored, beside pg_dump and psql.
    backup.SECTION,
    # Later issues: erasure.SECTION
]
