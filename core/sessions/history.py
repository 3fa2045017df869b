"""Scroll-back: every message of a session, a page at a time, newest pages first.

A message lives in up to three places: the Redis buffer (the recent unsummarized window), the
shard's WAL (appended, not yet drained) and the durable ``messages`` table (drained). A page is
the newest ``limit`` seqs below ``before_seq`` of their union, so it never depends on how far
the drainer or the summaries have got:

1. One Redis call (``history.lua``): the buffer, meta ``seq`` and the session's WAL high water.
   The buffer is contiguous up to the newest seq, so when the page lies inside it, that is all.
2. Otherwise one indexed query of the durable store (``seq < before ORDER BY seq DESC``).
3. Seqs still missing from the page while the WAL may hold them (at or below the high water):
   the messages that left the buffer before they were drained. They are read from the WAL,
   then the store is asked once more for what is still missing, because the drainer may have
   committed and trimmed them between our two reads (it commits before it trims).

A seq found nowhere was dead-lettered; the page goes on without it. Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import redis
from sqlalchemy import Engine

from core.errors import ValidationError
from core.models import HistoryPage, Message, micros_to_datetime
from core.store.codec import decode_buffer_item, split_buffer_item
from core.store.connections import as_text, raw_command
from core.store.keys import SessionKeys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts
from core.summaries import store as summary_store

HISTORY_MAX_LIMIT = 1000
# XRANGE chunk while looking for undrained messages in the shard's WAL.
_WAL_CHUNK = 1000


def validate_page(before_seq: object, limit: object) -> tuple[int | None, int]:
    """``before_seq`` (None or an int >= 1) and ``limit`` (1..1000), or ValidationError."""
    if before_seq is not None and (
        not isinstance(before_seq, int) or isinstance(before_seq, bool) or before_seq < 1
    ):
        raise ValidationError("before_seq", f"must be an integer >= 1 or None, got {before_seq!r}")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise ValidationError("limit", f"must be an integer 1..{HISTORY_MAX_LIMIT}, got {limit!r}")
    return before_seq, limit


def page(
    client: redis.Redis,
    scripts: Scripts,
    engine: Callable[[], Engine],
    keys: SessionKeys,
    *,
    before_seq: int | None,
    limit: int,
) -> HistoryPage:
    """The newest ``limit`` messages with ``seq < before_seq`` (None: the newest), oldest first."""
    with redis_errors():
        items, last, high = scripts.history(
            keys=[keys.meta, keys.buffer, keys.high_water], args=[keys.member]
        )
    newest = int(last or 0)  # 0: Redis has forgotten the session (or never had it)
    high_water = int(high or 0)
    top = newest if before_seq is None else min(before_seq - 1, newest)
    found: dict[int, Message] = {}
    for item in items:
        seq = split_buffer_item(item)[0]
        if seq <= top:
            found[seq] = decode_buffer_item(item)
    window = sorted(found)[-limit:]
    if newest and _inside(window, top=top, limit=limit):
        return _page(found, window, durable=set())
    # Appends after our Redis read get seqs above `newest`: leave them to the next call.
    bound = before_seq if not newest else top + 1
    stored = _from_store(engine(), keys, before_seq=bound, limit=limit)
    durable = {message.seq for message in stored}
    found.update({message.seq: message for message in stored if message.seq not in found})
    ceiling = top if newest else max([*found, high_water, 0])
    if before_seq is not None:
        ceiling = min(ceiling, before_seq - 1)
    missing = _missing(found, ceiling=ceiling, limit=limit, high_water=high_water)
    if missing:
        found.update(_from_wal(client, keys, missing))
        still = [seq for seq in missing if seq not in found]
        if still:
            late = summary_store.load_messages(
                engine(),
                tenant=keys.tenant,
                session_id=keys.session_id,
                from_seq=min(still),
                to_seq=max(still),
            )
            for message in late:
                if message.seq not in found:
                    found[message.seq] = message
                    durable.add(message.seq)
    window = sorted(seq for seq in found if seq <= ceiling)[-limit:]
    return _page(found, window, durable=durable)


def _inside(window: list[int], *, top: int, limit: int) -> bool:
    """The buffer alone answers: the window is contiguous, ends at ``top``, and is full or
    starts at seq 1."""
    if not window or window[-1] != top or window[-1] - window[0] + 1 != len(window):
        return top == 0 and not window  # before_seq=1: nothing can be older
    return len(window) == limit or window[0] == 1


def _missing(found: dict[int, Message], *, ceiling: int, limit: int, high_water: int) -> list[int]:
    """Seqs the page would need that no source gave us yet and the WAL may still hold."""
    window = sorted(seq for seq in found if seq <= ceiling)[-limit:]
    low = window[0] if len(window) == limit else 1
    return [seq for seq in range(low, min(ceiling, high_water) + 1) if seq not in found]


def _from_store(
    engine: Engine, keys: SessionKeys, *, before_seq: int | None, limit: int
) -> list[Message]:
    return summary_store.load_messages_before(
        engine,
        tenant=keys.tenant,
        session_id=keys.session_id,
        before_seq=before_seq,
        limit=limit,
    )


def _from_wal(client: redis.Redis, keys: SessionKeys, missing: list[int]) -> dict[int, Message]:
    """The session's messages with these seqs that are still in the shard's WAL."""
    wanted = set(missing)
    found: dict[int, Message] = {}
    start = "-"
    while wanted:
        with redis_errors():
            # Raw bytes: an entry that is not UTF-8 must not break the read (the drainer
            # dead-letters it).
            entries = raw_command(client, "XRANGE", keys.wal, start, "+", "COUNT", _WAL_CHUNK)
        for _entry_id, raw in entries:
            message = _wal_message(raw, keys, wanted)
            if message is not None:
                found[message.seq] = message
                wanted.discard(message.seq)
        if len(entries) < _WAL_CHUNK:
            break
        start = "(" + as_text(entries[-1][0])
    return found


def _wal_message(raw: dict[bytes, bytes], keys: SessionKeys, wanted: set[int]) -> Message | None:
    """A message entry of this session with a wanted seq, else None (other sessions, other
    kinds, malformed entries)."""
    try:
        fields = {name.decode(): value.decode() for name, value in raw.items()}
        if fields.get("k", "m") != "m" or int(fields.get("q", 0)) not in wanted:
            return None
        record = json.loads(fields["d"])
        if record.get("t") != keys.tenant or record.get("s") != keys.session_id:
            return None
        return Message(
            message_id=record["id"],
            seq=int(fields["q"]),
            role=record["r"],
            content=record["c"],
            tokens=record["k"],
            created_at=micros_to_datetime(record["ts"]),
            metadata=record.get("md"),
        )
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _page(found: dict[int, Message], window: list[int], *, durable: set[int]) -> HistoryPage:
    messages = [found[seq] for seq in window]
    first = window[0] if window else 1
    return HistoryPage(
        messages=messages,
        next_before_seq=first if first > 1 else None,
        from_durable_store=any(seq in durable for seq in window),
    )


def summaries(
    engine: Engine, keys: SessionKeys, *, limit: int
) -> list[summary_store.SummaryRecord]:
    """The session's ``limit`` (1..1000) newest stored summaries, newest first."""
    validate_page(None, limit)
    return summary_store.latest_summaries(
        engine, tenant=keys.tenant, session_id=keys.session_id, limit=limit
    )
