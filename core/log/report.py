"""What a drain did, pass by pass and in total."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.log.backpressure import Drained
from core.log.entries import RawFields

# (entry id, fields as raw bytes): what XREADGROUP and XAUTOCLAIM return, undecoded.
Entry = tuple[str, RawFields]


@dataclass
class DrainReport:
    """What one drain did. ``skipped`` counts rows the store already had (replays)."""

    persisted: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0
    batches: int = 0
    shards: list[int] = field(default_factory=list)
    # Sessions whose flagged entries were just committed: the caller enqueues a summary.
    summarize: set[tuple[str, str]] = field(default_factory=set)
    # The decodable entries of the last batch (persisted or dead-lettered): they leave the WAL,
    # so their sessions' high water and their tenants' bytes are settled after the ack.
    drained: list[Drained] = field(default_factory=list)
    # Set when the durable store is failing and the drainer is backing off.
    error: str | None = None
    # Shards left for a newer worker: an entry of a kind or version this one does not know.
    waiting: dict[int, str] = field(default_factory=dict)
    # Within one batch: the entries from the first unknown one on, and its kind/version.
    unprocessed: list[Entry] = field(default_factory=list)
    waiting_kind: str = ""
    retry_in_s: float = 0.0

    def add(self, other: DrainReport) -> None:
        self.persisted += other.persisted
        self.skipped += other.skipped
        self.dead_lettered += other.dead_lettered
        self.reclaimed += other.reclaimed
        self.batches += other.batches
        self.shards += other.shards
        self.summarize |= other.summarize
        self.error = other.error or self.error
        self.retry_in_s = max(self.retry_in_s, other.retry_in_s)
        self.waiting |= other.waiting
