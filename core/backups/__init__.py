"""Backups (docs/backups.md): consistent, streaming, per-subject encrypted, verified, restored.

May import ``core.store``, ``core.crypto``, ``core.models``, ``core.errors`` and ``config``:
a backup reads the durable tables as stored, and never the domain rooms above them.
"""

from core.backups.backup import BackupAborted, BackupWriter
from core.backups.catalog import BackupNotFound, Catalog, load_catalog
from core.backups.keyexport import ExportedKeys, export_keys, list_exports
from core.backups.keys import LiveKeys
from core.backups.manifest import FULL, INCREMENTAL, Manifest
from core.backups.prune import PruneReport, prune
from core.backups.restore import Restorer, RestoreReport
from core.backups.service import BackupRunReport, run_backup, run_prune
from core.backups.target import BackupTargetError, ObjectMissing, Target, open_target
from core.backups.verify import Verification, verify

__all__ = [
    "FULL",
    "INCREMENTAL",
    "BackupAborted",
    "BackupNotFound",
    "BackupRunReport",
    "BackupTargetError",
    "BackupWriter",
    "Catalog",
    "ExportedKeys",
    "LiveKeys",
    "Manifest",
    "ObjectMissing",
    "PruneReport",
    "RestoreReport",
    "Restorer",
    "Target",
    "Verification",
    "export_keys",
    "list_exports",
    "load_catalog",
    "open_target",
    "prune",
    "run_backup",
    "run_prune",
    "verify",
]
