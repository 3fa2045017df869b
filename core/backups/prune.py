"""``prune``: keep the newest N full backups and the incrementals built on them.

- Never the newest backup that verifies: when none of the kept full backups verifies, the
  newest older full one that does is kept too (verification runs only when something would
  be deleted).
- Never an object that a kept manifest names.
- A backup is deleted manifest first, so a prune cut short leaves orphans, never a manifest
  whose objects are gone.
- Orphans (objects of a backup id without a valid manifest: a run killed mid-way) are deleted
  only while no backup run holds the lease, checked after listing: a run that starts later
  writes under a newer id, which the listing did not see.
- Key-store exports past ``keystore_export_retention_s`` go as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.backups.catalog import load_catalog
from core.backups.keyexport import prune_exports
from core.backups.manifest import FULL, manifest_name
from core.backups.target import Target
from core.backups.verify import verify_backup
from core.crypto.secrets import KeySecrets

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    ran: bool = True
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    objects_deleted: int = 0
    uploads_aborted: int = 0
    exports_deleted: int = 0
    # Set when the orphans were left because a backup run held the lease.
    orphans_deferred: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "kept": self.kept,
            "deleted": self.deleted,
            "orphans": self.orphans,
            "objects_deleted": self.objects_deleted,
            "uploads_aborted": self.uploads_aborted,
            "exports_deleted": self.exports_deleted,
            "orphans_deferred": self.orphans_deferred,
        }

    def summary(self) -> str:
        if not self.ran:
            return "prune skipped: another run holds the prune lease"
        return (
            f"kept {len(self.kept)} backups, deleted {len(self.deleted)} and "
            f"{len(self.orphans)} orphaned runs ({self.objects_deleted} objects), "
            f"{self.exports_deleted} key-store export objects"
            + ("; orphans left: a backup is running" if self.orphans_deferred else "")
        )


def prune(
    target: Target,
    secrets: KeySecrets,
    *,
    keep_full: int,
    export_retention_s: int,
    backup_running: Callable[[], bool],
) -> PruneReport:
    report = PruneReport()
    listed_at = datetime.now(UTC)
    catalog = load_catalog(target)
    fulls = [m for m in catalog.newest_first() if m.kind == FULL]
    kept_fulls = {m.id for m in fulls[:keep_full]}
    if len(fulls) > keep_full:
        for candidate in fulls:  # newest first: the newest that verifies is never deleted
            if verify_backup(target, secrets, candidate).ok:
                kept_fulls.add(candidate.id)
                break
            log.warning("prune: backup %s does not verify", candidate.id)
    kept = {
        m.id
        for m in catalog.manifests.values()
        if m.chain[0] in kept_fulls and all(member in catalog.manifests for member in m.chain)
    }
    protected = {name for backup_id in kept for name in catalog.manifests[backup_id].object_names()}
    for manifest in catalog.newest_first():
        if manifest.id in kept:
            continue
        stored = [item.name for item in catalog.objects.get(manifest.id, [])]
        first = manifest_name(manifest.id)
        report.objects_deleted += target.delete([first])
        rest = [name for name in stored if name != first and name not in protected]
        report.objects_deleted += target.delete(rest)
        report.deleted.append(manifest.id)
    orphans = catalog.orphans()
    if orphans:
        if backup_running():
            report.orphans_deferred = True
        else:
            for backup_id, members in sorted(orphans.items()):
                names = [item.name for item in members if item.name not in protected]
                report.objects_deleted += target.delete(names)
                report.orphans.append(backup_id)
    if not backup_running():
        report.uploads_aborted = target.abort_stale_uploads(older_than=listed_at)
    report.exports_deleted = prune_exports(target, retention_s=export_retention_s)
    report.kept = sorted(kept, reverse=True)
    return report
