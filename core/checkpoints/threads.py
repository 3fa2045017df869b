"""Whole-thread operations built from the store's own calls: ``copy_thread``, ``prune`` and
``delete_for_runs``.

Both re-put checkpoints exactly as they were stored (same ids, records, blobs and pending
writes: nothing is deserialized), so the copies take the same write-behind path as any put.
``prune(keep_latest)`` is a delete_thread followed by re-putting the newest checkpoint of each
namespace: the floor hides everything older from every reader at once and the purge deletes
it, and the re-put rows are newer than the floor. ``delete_for_runs`` does the same to each
thread that has checkpoints of the runs (found by the runs' index, never a scan of keys),
re-putting the checkpoints of the other runs. Run both on an idle thread: a checkpoint
written while they run may be missed by the copy or pruned with the rest.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.checkpoints.keys import CheckpointKeys
from core.checkpoints.model import EMPTY, Blob, Loaded, PendingWrite
from core.checkpoints.store import AsyncCheckpointStore, CheckpointStore

KEEP_LATEST, DELETE = "keep_latest", "delete"
STRATEGIES = (KEEP_LATEST, DELETE)


def blobs_of(found: Loaded) -> list[Blob]:
    """The blobs a checkpoint names, as it was stored (a channel without a value: EMPTY)."""
    blobs = []
    for channel, version in found.record.blobs:
        kind, value = found.values.get(channel, (EMPTY, None))
        blobs.append(Blob(channel, version, kind, value))
    return blobs


def write_groups(found: Loaded) -> list[tuple[bool, list[PendingWrite]]]:
    """The checkpoint's writes as put_writes calls: the special channels (negative idx)
    replace, the others are kept as first written."""
    special = [write for write in found.writes if write.idx < 0]
    regular = [write for write in found.writes if write.idx >= 0]
    return [(flag, group) for flag, group in ((True, special), (False, regular)) if group]


def newest_per_namespace(newest_first: Sequence[Loaded]) -> list[Loaded]:
    kept: dict[str, Loaded] = {}
    for found in newest_first:
        kept.setdefault(found.record.ns, found)
    return list(kept.values())


def _put_all(store: CheckpointStore, target: CheckpointKeys, checkpoints: Sequence[Loaded]) -> None:
    for found in checkpoints:
        record = found.record
        store.put(target, record, blobs_of(found))
        for replace, group in write_groups(found):
            store.put_writes(
                target,
                record.ns,
                record.checkpoint_id,
                group,
                replace=replace,
                subject_id=record.subject_id,
            )


def copy_thread(store: CheckpointStore, source: CheckpointKeys, target: CheckpointKeys) -> int:
    """Every checkpoint of ``source`` (all namespaces) onto ``target``, oldest first."""
    found = list(store.list(source, None))
    _put_all(store, target, list(reversed(found)))
    return len(found)


def prune(store: CheckpointStore, keys: CheckpointKeys, strategy: str) -> None:
    kept = newest_per_namespace(list(store.list(keys, None))) if strategy == KEEP_LATEST else []
    store.delete_thread(keys)
    _put_all(store, keys, kept)


def _survivors(found: Sequence[Loaded], run_ids: set[str]) -> list[Loaded] | None:
    """Oldest first, the checkpoints of other runs; None when the thread has none of these."""
    kept = [one for one in found if one.record.metadata.get("run_id") not in run_ids]
    return None if len(kept) == len(found) else list(reversed(kept))


def delete_for_runs(store: CheckpointStore, tenant: str, run_ids: Sequence[str]) -> int:
    """Returns how many threads were rewritten."""
    wanted = set(run_ids)
    changed = 0
    for thread in sorted(store.run_threads(tenant, run_ids)) if wanted else []:
        keys = store.thread_keys(tenant, thread)
        kept = _survivors(list(store.list(keys, None)), wanted)
        if kept is not None:
            store.delete_thread(keys)
            _put_all(store, keys, kept)
            changed += 1
    return changed


async def adelete_for_runs(store: AsyncCheckpointStore, tenant: str, run_ids: Sequence[str]) -> int:
    wanted = set(run_ids)
    changed = 0
    for thread in sorted(await store.run_threads(tenant, run_ids)) if wanted else []:
        keys = store.thread_keys(tenant, thread)
        kept = _survivors([one async for one in store.list(keys, None)], wanted)
        if kept is not None:
            await store.delete_thread(keys)
            await _aput_all(store, keys, kept)
            changed += 1
    return changed


async def _aput_all(
    store: AsyncCheckpointStore, target: CheckpointKeys, checkpoints: Sequence[Loaded]
) -> None:
    for found in checkpoints:
        record = found.record
        await store.put(target, record, blobs_of(found))
        for replace, group in write_groups(found):
            await store.put_writes(
                target,
                record.ns,
                record.checkpoint_id,
                group,
                replace=replace,
                subject_id=record.subject_id,
            )


async def acopy_thread(
    store: AsyncCheckpointStore, source: CheckpointKeys, target: CheckpointKeys
) -> int:
    found = [loaded async for loaded in store.list(source, None)]
    await _aput_all(store, target, list(reversed(found)))
    return len(found)


async def aprune(store: AsyncCheckpointStore, keys: CheckpointKeys, strategy: str) -> None:
    kept = []
    if strategy == KEEP_LATEST:
        kept = newest_per_namespace([loaded async for loaded in store.list(keys, None)])
    await store.delete_thread(keys)
    await _aput_all(store, keys, kept)
