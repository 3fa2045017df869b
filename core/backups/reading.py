"""Reading a backup's objects back: frames checked against the manifest, indexes, keys."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

from core.backups.frames import Frame, FrameError, FrameStream, open_frame
from core.backups.index import RowIndex, empty_index
from core.backups.keys import unwrap_key
from core.backups.manifest import INDEX, Manifest, ObjectEntry
from core.backups.target import Target
from core.crypto.secrets import KeySecrets


@lru_cache(maxsize=1)
def memscribe_version() -> str:
    try:
        return version("memscribe")
    except PackageNotFoundError:
        return "unknown"


def checked_frames(target: Target, entry: ObjectEntry) -> Iterator[Frame]:
    """The frames of one object; after the last, its size, SHA-256 and frame count are held
    against the manifest (``FrameError`` naming the object if any differs)."""
    stream = FrameStream(target.stream(entry.name), entry.name)
    count = 0
    for frame in stream:
        count += 1
        yield frame
    if stream.size != entry.size:
        raise FrameError(f"{entry.name}: {stream.size} bytes, the manifest says {entry.size}")
    if stream.sha256 != entry.sha256:
        raise FrameError(f"{entry.name}: SHA-256 does not match the manifest (object corrupted)")
    if count != entry.frames:
        raise FrameError(f"{entry.name}: {count} frames, the manifest says {entry.frames}")


def backup_key(secrets: KeySecrets, manifest: Manifest) -> bytes:
    return unwrap_key(secrets, manifest.backup_key)


def read_index(target: Target, manifest: Manifest, table: str, secrets: KeySecrets) -> RowIndex:
    """The row index ``manifest`` holds for ``table`` (empty if it has none)."""
    entries = manifest.objects_of(table, INDEX)
    if not entries:
        return empty_index()
    key = backup_key(secrets, manifest)
    entry = entries[0]

    def payloads() -> Iterator[tuple[bytes, int]]:
        for frame in checked_frames(target, entry):
            yield open_frame(frame, key, entry.name), frame.rows

    try:
        return RowIndex.from_payloads(payloads())
    except ValueError as exc:
        raise FrameError(f"{entry.name}: {exc}") from None
