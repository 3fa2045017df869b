"""The ``maintenance.erase`` task's work: everything the request's barrier made residue goes.

It needs the receipt id only (the task never carries a subject id): the sessions to empty are
those the request stamped with the receipt (``sessions.erased_by``), the memories those it
tombstoned. Each step is idempotent, so a retry (or a worker killed midway) just runs again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine, delete, select

from config.settings import Settings
from core.checkpoints.erase import empty_erased
from core.erasure import receipts, scrub
from core.erasure.receipts import COMPLETED, DONE, ERASING, TENANT, Receipt
from core.erasure.scrub import Erased, Floors
from core.erasure.sessions import EVERYTHING, Cleared, SessionClearer
from core.errors import PermanentError
from core.store.db import llm_usage, memory_tombstones, sessions
from core.store.db_errors import translate_errors
from core.store.keys import Keys
from core.store.redis_errors import redis_errors
from core.store.scripts import Scripts

log = logging.getLogger(__name__)


def erased_by(engine: Engine, receipt_ids: list[str]) -> Erased:
    """The floors and memory ids the receipts' erasures removed."""
    erased = Erased()
    with translate_errors(), engine.connect() as connection:
        for row in connection.execute(
            select(
                sessions.c.tenant,
                sessions.c.session_id,
                sessions.c.cleared_seq,
                sessions.c.cleared_state_version,
                sessions.c.cleared_result_position,
            ).where(sessions.c.erased_by.in_(receipt_ids))
        ):
            erased.sessions[(row.tenant, row.session_id)] = Floors(
                int(row.cleared_seq),
                int(row.cleared_state_version),
                int(row.cleared_result_position),
            )
        erased.memory_ids = set(
            connection.execute(
                select(memory_tombstones.c.memory_id).where(
                    memory_tombstones.c.receipt_id.in_(receipt_ids)
                )
            ).scalars()
        )
    return erased


class ErasureJob:
    def __init__(self, *, redis: redis.Redis, engine: Engine, settings: Settings) -> None:
        self._redis = redis
        self._engine = engine
        self._settings = settings
        self._keys = Keys.of(settings)
        self._clearer = SessionClearer(
            scripts=Scripts.register(redis), engine=engine, settings=settings
        )

    def run(self, receipt_id: str) -> Receipt:
        receipt = receipts.load(self._engine, receipt_id)
        if receipt is None:
            raise PermanentError(f"no erasure receipt {receipt_id!r}")
        if receipt.status == COMPLETED:
            return receipt
        if receipt.stage == receipts.REQUESTED:
            raise PermanentError(
                f"erasure {receipt_id} did not finish its request; call erase_* again with the "
                "same request_id"
            )
        started = receipt.started_at or datetime.now(UTC)
        receipts.update_receipt(self._engine, receipt_id, stage=ERASING, started_at=started)
        erased = erased_by(self._engine, [receipt_id])
        counts: dict[str, Any] = dict(receipt.counts)
        removed: dict[str, int] = {}
        for (tenant, session_id), floors in sorted(erased.sessions.items()):
            for name, count in self._empty_session(tenant, session_id, floors).items():
                removed[name] = removed.get(name, 0) + count
        if receipt.scope == TENANT:
            for name, count in self._tenant_wide(receipt.tenant).items():
                removed[name] = removed.get(name, 0) + count
        for name, count in empty_erased(self._engine, receipt_id).items():
            removed[name] = removed.get(name, 0) + count
        with redis_errors():
            for name, count in scrub.scrub(self._redis, self._keys, erased, delete=True).items():
                removed[name] = removed.get(name, 0) + count
            counts["aof"] = self._rewrite_aof()
            residue = scrub.scrub(self._redis, self._keys, erased, delete=False)
        counts["removed"] = removed
        counts["memory_tombstones"] = len(erased.memory_ids)
        counts["residue"] = residue
        receipts.update_receipt(
            self._engine,
            receipt_id,
            status=COMPLETED,
            stage=DONE,
            counts=counts,
            completed_at=datetime.now(UTC),
        )
        log.info("erasure %s completed", receipt_id)
        found = receipts.load(self._engine, receipt_id)
        assert found is not None
        return found

    def _empty_session(self, tenant: str, session_id: str, floors: Floors) -> dict[str, int]:
        cleared = Cleared(floors.seq, floors.state, floors.results)
        return self._clearer.empty(tenant, session_id, cleared, what=EVERYTHING).counts

    def _tenant_wide(self, tenant: str) -> dict[str, int]:
        """What a tenant holds beyond its sessions and subjects: usage rows, budgets, the
        indexes of its sessions."""
        with translate_errors(), self._engine.begin() as connection:
            usage = connection.execute(delete(llm_usage).where(llm_usage.c.tenant == tenant))
        with redis_errors(), self._redis.pipeline(transaction=False) as pipe:
            for shard in range(self._keys.shards):
                pipe.delete(self._keys.tenant_sessions(shard, tenant))
                pipe.hdel(self._keys.tenant_bytes(shard), tenant)
            pipe.hdel(self._keys.tenant_budgets(), tenant)
            pipe.srem(self._keys.deferred_tenants(), tenant)
            pipe.delete(self._keys.deferred_sessions(tenant))
            pipe.execute()
        return {"llm_usage": int(usage.rowcount)}

    def _rewrite_aof(self) -> str:
        """Redis keeps deleted values in its append-only file until it is rewritten."""
        try:
            enabled = self._redis.config_get("appendonly").get("appendonly") == "yes"
        except redis.ResponseError:
            return "unknown (CONFIG is not allowed)"
        if not enabled:
            return "off (Redis keeps no append-only file)"
        try:
            self._redis.bgrewriteaof()
        except redis.ResponseError as exc:
            # "already in progress": the running rewrite may predate our deletes; schedule one.
            if "progress" not in str(exc):
                raise
            return "already running; scheduled"
        return "rewrite started"
