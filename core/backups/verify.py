"""``backup verify``: every object of a backup read back and held against its manifest.

For each object: its size, SHA-256 and frame count, and every frame sealed under the backup's
own key (the index, the deletions, the records) opened, which authenticates those bytes too.
Frames under a subject's key are checked by checksum only: verify needs no data key, and a
destroyed one (an erased subject) is not a fault.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.backups.catalog import Catalog, load_catalog
from core.backups.frames import open_frame
from core.backups.keys import BACKUP_KEY
from core.backups.manifest import Manifest
from core.backups.reading import backup_key, checked_frames
from core.backups.target import BackupTargetError, Target
from core.crypto.cipher import CipherError
from core.crypto.secrets import KeySecrets


@dataclass
class Verification:
    backup_id: str
    objects: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.backup_id,
            "ok": self.ok,
            "objects": self.objects,
            "bytes": self.bytes,
            "problems": self.problems,
        }


def verify_backup(
    target: Target,
    secrets: KeySecrets,
    manifest: Manifest,
    *,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """One backup's own objects (not its parents')."""
    result = Verification(manifest.id)
    try:
        own = backup_key(secrets, manifest)
    except CipherError as exc:
        result.problems.append(f"{manifest.id}: the backup key does not unwrap ({exc})")
        return result
    own_id = f"{BACKUP_KEY}{manifest.id}"
    for entry in manifest.objects:
        try:
            for frame in checked_frames(target, entry):
                if frame.key_id == own_id:
                    open_frame(frame, own, entry.name)
            result.objects += 1
            result.bytes += entry.size
        except BackupTargetError as exc:
            result.problems.append(str(exc))
        if progress:
            progress(entry.size)
    return result


def verify(
    target: Target,
    secrets: KeySecrets,
    backup_id: str | None = None,
    *,
    catalog: Catalog | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Verification]:
    """``backup_id`` and the backups it depends on, or every backup; newest first."""
    catalog = catalog or load_catalog(target)
    if backup_id is None:
        manifests = catalog.newest_first()
        # A manifest that does not parse or match its checksum is a failed backup, not none.
        broken = [
            Verification(broken_id, problems=[reason])
            for broken_id, reason in sorted(catalog.broken.items(), reverse=True)
        ]
    else:
        manifests = list(reversed(catalog.chain(backup_id)))
        broken = []
    return broken + [verify_backup(target, secrets, m, progress=progress) for m in manifests]
