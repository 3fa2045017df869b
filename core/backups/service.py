"""Backup runs as the tasks and the CLI start them: leases, schedule slots, the last success.

- One backup at a time: a run takes the backup lease (renewed after every batch) or skips.
- One backup per scheduled interval: a scheduled run first claims its slot,
  ``floor(now / backup_interval_s)``, in Redis. Every beat sends one tick per interval, so
  however many beats run, their ticks of one interval share a slot and only the first backs
  up. A run that fails gives its slot back, so a retry within the interval may try again.
- Prune takes a lease of its own and leaves orphans alone while a backup holds its lease.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from core.backups.backup import BackupWriter, Progress
from core.backups.keyexport import export_keys
from core.backups.prune import PruneReport, prune
from core.backups.target import Target, target_from_settings
from core.crypto.keystore import KeyStore
from core.crypto.secrets import load_secrets
from core.store.keys import Keys
from core.store.lease import Lease
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

log = logging.getLogger(__name__)
_PRUNE_LEASE_MS = 600_000


@dataclass
class BackupRunReport:
    ran: bool
    reason: str = ""
    backup: dict[str, Any] = field(default_factory=dict)
    keystore_export: str | None = None
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ran": self.ran,
            "reason": self.reason,
            "backup": self.backup,
            "keystore_export": self.keystore_export,
            "duration_s": round(self.duration_s, 3),
        }

    def summary(self) -> str:
        if not self.ran:
            return f"backup skipped: {self.reason}"
        b = self.backup
        return (
            f"backup {b['id']} ({b['kind']}) complete: {b['rows']} rows written of "
            f"{b['total_rows']}, {b['bytes']} bytes, {self.duration_s:.1f}s"
            + (f"; key-store export {self.keystore_export}" if self.keystore_export else "")
        )


def run_backup(
    *,
    redis: redis.Redis,
    engine: Engine,
    settings: Settings,
    kind: str = "auto",
    scheduled: bool = False,
    target: Target | None = None,
    progress: Progress | None = None,
) -> BackupRunReport:
    """One backup under the lease; ``scheduled`` runs also claim their schedule slot."""
    keys = Keys.of(settings)
    scripts = Scripts.register(redis)
    slot_key = None
    with redis_errors():
        if scheduled:
            slot = math.floor(time.time() / settings.backup_interval_s)
            slot_key = keys.backup_slot(slot)
            ttl_s = max(1, math.ceil(settings.backup_interval_s * 2))
            if not redis.set(slot_key, "1", nx=True, ex=ttl_s):
                return BackupRunReport(ran=False, reason=f"slot {slot} already backed up")
        lease_ms = int(settings.backup_lease_s * 1000)
        lease = Lease(redis, scripts.lease, keys.backup_lease(), lease_ms)
        if not lease.acquire():
            return BackupRunReport(ran=False, reason="another backup run holds the lease")
    started = time.monotonic()
    keystore = KeyStore.from_settings(settings)
    try:
        target = target or target_from_settings(settings)
        writer = BackupWriter(
            engine=engine,
            target=target,
            keystore=keystore,
            batch_rows=settings.backup_batch_rows,
            full_every=settings.backup_full_every,
            renew=lease.renew,
            progress=progress,
        )
        manifest = writer.run(kind=kind)
        export = export_keys(target, keystore)["id"] if settings.backup_export_keys else None
        summary = manifest.summary()
        with redis_errors():
            redis.hset(
                keys.backup_last(),
                mapping={
                    "id": manifest.id,
                    "kind": manifest.kind,
                    "completed_at": manifest.completed_at,
                    "rows": manifest.rows,
                },
            )
        return BackupRunReport(
            ran=True, backup=summary, keystore_export=export, duration_s=time.monotonic() - started
        )
    except BaseException:
        if slot_key is not None:
            with redis_errors():
                redis.delete(slot_key)  # the interval is not backed up: a retry may try again
        raise
    finally:
        keystore.dispose()
        with redis_errors():
            lease.release()


def run_prune(
    *, redis: redis.Redis, settings: Settings, target: Target | None = None
) -> PruneReport:
    keys = Keys.of(settings)
    scripts = Scripts.register(redis)
    lease = Lease(redis, scripts.lease, keys.prune_lease(), _PRUNE_LEASE_MS)
    with redis_errors():
        if not lease.acquire():
            return PruneReport(ran=False)

    def backup_running() -> bool:
        with redis_errors():
            return bool(redis.exists(keys.backup_lease()))

    try:
        report = prune(
            target or target_from_settings(settings),
            load_secrets(settings),
            keep_full=settings.backup_keep_full,
            export_retention_s=settings.keystore_export_retention_s,
            backup_running=backup_running,
        )
        log.info("%s", report.summary())
        return report
    finally:
        with redis_errors():
            lease.release()
