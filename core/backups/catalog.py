"""What a target holds: the backups that exist (a valid manifest), and everything else.

A backup whose manifest is missing (a run killed, or still under way) or unreadable does not
exist for ``list``, ``restore`` or ``prune``'s choices; its objects are orphans, removed by
``prune`` once no backup run holds the lease.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from core.backups.frames import FrameError
from core.backups.manifest import (
    FULL,
    MANIFEST,
    PREFIX,
    Manifest,
    backup_id_of,
    manifest_name,
    parse_manifest,
)
from core.backups.target import StoredObject, Target
from core.errors import ValidationError


class BackupNotFound(ValidationError):
    """No backup with that id (a valid manifest) on the target."""


@dataclass
class Catalog:
    manifests: dict[str, Manifest] = field(default_factory=dict)
    # id -> why its manifest was refused (its objects count as orphans)
    broken: dict[str, str] = field(default_factory=dict)
    # id -> the stored objects of every backup id (manifest or not)
    objects: dict[str, list[StoredObject]] = field(default_factory=dict)

    def newest_first(self) -> list[Manifest]:
        return sorted(self.manifests.values(), key=lambda m: (m.created_at, m.id), reverse=True)

    def latest(self) -> Manifest | None:
        ordered = self.newest_first()
        return ordered[0] if ordered else None

    def orphans(self) -> dict[str, list[StoredObject]]:
        return {
            backup_id: stored
            for backup_id, stored in self.objects.items()
            if backup_id not in self.manifests
        }

    def get(self, backup_id: str) -> Manifest:
        found = self.manifests.get(backup_id)
        if found is None:
            reason = self.broken.get(backup_id)
            detail = f" ({reason})" if reason else ""
            raise BackupNotFound(
                "backup_id", f"no backup {backup_id!r} with a valid manifest{detail}"
            )
        return found

    def chain(self, backup_id: str) -> list[Manifest]:
        """The backups a restore of ``backup_id`` reads: its full backup first."""
        manifest = self.get(backup_id)
        chain = [self.get(member) for member in manifest.chain]
        if chain[0].kind != FULL or chain[-1].id != backup_id:
            raise BackupNotFound("backup_id", f"backup {backup_id!r} has a malformed chain")
        return chain

    def dependents(self, backup_id: str) -> list[Manifest]:
        """The incrementals whose chain includes ``backup_id``."""
        return [
            manifest
            for manifest in self.manifests.values()
            if backup_id in manifest.chain and manifest.id != backup_id
        ]


def load_catalog(target: Target) -> Catalog:
    catalog = Catalog()
    grouped: dict[str, list[StoredObject]] = defaultdict(list)
    for stored in target.list(f"{PREFIX}/"):
        backup_id = backup_id_of(stored.name)
        if backup_id is not None:
            grouped[backup_id].append(stored)
    catalog.objects = dict(grouped)
    for backup_id, members in sorted(grouped.items()):
        if not any(item.name.endswith(f"/{MANIFEST}") for item in members):
            continue
        name = manifest_name(backup_id)
        try:
            manifest = parse_manifest(target.read(name), name)
        except FrameError as exc:
            catalog.broken[backup_id] = str(exc)
            continue
        if manifest.id != backup_id:
            catalog.broken[backup_id] = f"{name}: names backup {manifest.id!r}"
            continue
        catalog.manifests[backup_id] = manifest
    return catalog
