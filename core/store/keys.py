"""Every Redis key shape memscribe uses, in one place.

A session's keys and its shard's write-ahead stream share one hash tag, ``{<shard>}``, so each
Lua script touches a single slot and Redis Cluster works unchanged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from config.settings import Settings

CONSUMER_GROUP = "persist"


def shard_of(tenant: str, session_id: str, shards: int) -> int:
    """The WAL shard of a session: stable across processes and languages (CRC-32)."""
    return zlib.crc32(f"{tenant}/{session_id}".encode()) % shards


@dataclass(frozen=True, slots=True)
class SessionKeys:
    shard: int
    meta: str
    buffer: str
    recent_ids: str
    wal: str
    # Per-session memory settings (configure_session); read by append.lua, survives a cold meta.
    config: str
    # Summarize lease (holds the fencing token) and the draft of a summary not yet committed.
    summary_lease: str
    summary_draft: str
    # The shard's index of sessions with a summary pending (member "<tenant>/<session_id>").
    summary_pending: str
    # Shard-wide, read by append.lua: newest seq per session not yet durable, undrained bytes
    # per tenant, and the memory-pressure flag (see Keys).
    high_water: str = ""
    tenant_bytes: str = ""
    pressure: str = ""
    tenant: str = ""
    session_id: str = ""
    # Shard set of the tenant's sessions (erase_tenant's index; append.lua adds to it when a
    # session starts or is restored).
    tenant_index: str = ""

    def all(self) -> list[str]:
        """Every key a script of this session may touch (one slot), except the subject's
        index (``Keys.subject_sessions``), which depends on the subject."""
        return [
            *self.own(),
            self.wal,
            self.summary_pending,
            *self.shared_by_append(),
            self.tenant_index,
        ]

    def shared_by_append(self) -> list[str]:
        """The shard-wide keys append.lua reads besides the session's own and the WAL."""
        return [self.high_water, self.tenant_bytes, self.pressure]

    def own(self) -> list[str]:
        """The keys that belong to this session alone (the WAL and the pending index are shared
        by the shard)."""
        return [
            self.meta,
            self.buffer,
            self.recent_ids,
            self.config,
            self.summary_lease,
            self.summary_draft,
        ]

    @property
    def member(self) -> str:
        """This session in the shard's pending index: "<tenant>/<session_id>"."""
        return f"{self.tenant}/{self.session_id}"


@dataclass(frozen=True, slots=True)
class SubjectKeys:
    """A data subject's long-term memories in Redis: one slot, shared with a WAL shard."""

    shard: int
    # Hash: memory_id -> "<priority><pinned>|<json record>" for live memories; "-" for a
    # forgotten one and "><merged id>" for one consolidation folded (kept for idempotency and
    # so a re-warm from the store cannot bring them back); field "~" = the view is complete.
    memories: str
    # Hash: memory_id -> ms of its last recall (newer than the store's last_accessed).
    accessed: str
    # Hash: memory_id -> embedding vector (JSON) of the memory, filled by consolidation.
    embeddings: str
    wal: str
    # Shard hash: memory_id -> "<tenant>/<subject_id>" while its remember is not yet durable,
    # so forget(memory_id) finds a memory the store does not hold yet.
    pending_ids: str
    tenant_bytes: str
    pressure: str
    lease: str
    tenant: str
    subject_id: str

    def all(self) -> list[str]:
        return [self.memories, self.accessed, self.embeddings, self.lease]


@dataclass(frozen=True, slots=True)
class StateKeys:
    """A session's conversation state and agent results: the session's slot (``{<shard>}``)."""

    shard: int
    # Hash: "v" version, "sc" schema version, "f:subject" / "f:data" (JSON), and per kind
    # "k:<kind>" = the version that last changed it. Exists while Redis knows the state.
    main: str
    # Strings (JSON), one per kind with its own TTL: the task stack, the checkpoint
    # evaluation, the context and the temporary context.
    tasks: str
    evaluation: str
    context: str
    temp: str
    # Agent results: hash id -> JSON record ("~" complete, "#" last position); list of the
    # unconsumed ids, oldest first; list of consumed ids, newest first (the retention window).
    results: str
    unconsumed: str
    consumed: str
    wal: str
    # Shard hash: "<tenant>/<session_id>" -> newest state version still in the WAL.
    high_water: str
    tenant_bytes: str
    pressure: str
    tenant: str
    session_id: str

    @property
    def member(self) -> str:
        return f"{self.tenant}/{self.session_id}"

    def kind_keys(self) -> list[str]:
        """The per-kind strings, in ``core.state.model.KINDS`` order after "state"."""
        return [self.tasks, self.evaluation, self.context, self.temp]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one deployment (prefix and shard count)."""

    prefix: str
    shards: int

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        """The key builder of a deployment (``MEMSCRIBE_KEY_PREFIX``, ``MEMSCRIBE_SHARDS``)."""
        return cls(settings.key_prefix, settings.shards)

    def tag(self, shard: int) -> str:
        return f"{self.prefix}:{{{shard}}}"

    def session(self, tenant: str, session_id: str) -> SessionKeys:
        # tenant and session_id are validated to a charset without ':' '{' '}' or glob
        # characters, so these keys can neither collide nor be matched by another session.
        shard = shard_of(tenant, session_id, self.shards)
        base = f"{self.tag(shard)}:s:{tenant}:{session_id}"
        return SessionKeys(
            shard=shard,
            meta=f"{base}:meta",
            buffer=f"{base}:buf",
            recent_ids=f"{base}:ids",
            wal=self.wal(shard),
            config=f"{base}:cfg",
            summary_lease=f"{base}:slease",
            summary_draft=f"{base}:sdraft",
            summary_pending=self.summary_pending(shard),
            high_water=self.high_water(shard),
            tenant_bytes=self.tenant_bytes(shard),
            pressure=self.pressure(shard),
            tenant=tenant,
            session_id=session_id,
            tenant_index=self.tenant_sessions(shard, tenant),
        )

    def state(self, tenant: str, session_id: str) -> StateKeys:
        shard = shard_of(tenant, session_id, self.shards)
        base = f"{self.tag(shard)}:s:{tenant}:{session_id}"
        return StateKeys(
            shard=shard,
            main=f"{base}:st",
            tasks=f"{base}:st:tasks",
            evaluation=f"{base}:st:eval",
            context=f"{base}:st:ctx",
            temp=f"{base}:st:tmp",
            results=f"{base}:res",
            unconsumed=f"{base}:res:q",
            consumed=f"{base}:res:done",
            wal=self.wal(shard),
            high_water=self.state_high_water(shard),
            tenant_bytes=self.tenant_bytes(shard),
            pressure=self.pressure(shard),
            tenant=tenant,
            session_id=session_id,
        )

    def subject_sessions(self, shard: int, tenant: str, subject_id: str) -> str:
        """Set, in a session shard's slot: the sessions of this shard bound to the subject.
        Erasure finds a subject's sessions through these (never a SCAN); append.lua adds a
        session when it binds the subject."""
        return f"{self.tag(shard)}:sx:{tenant}:{subject_id}"

    def tenant_sessions(self, shard: int, tenant: str) -> str:
        """Set, in a session shard's slot: the tenant's sessions of this shard (added by
        append.lua when a session starts or is restored; erase_tenant reads it)."""
        return f"{self.tag(shard)}:tx:{tenant}"

    def no_subject(self, shard: int) -> str:
        """A key of the shard's slot that append.lua never writes: KEYS[10] for a session
        without a subject."""
        return f"{self.tag(shard)}:sx"

    def erasure_tombstone(self, shard: int, subject_ref: str) -> str:
        """String "<receipt id>|<ms>" in the subject's slot, named by the subject's keyed hash
        (never its id): set by erase_subject in the same call that drops the subject's memory
        view (core/lua/subject_erase.lua)."""
        return f"{self.tag(shard)}:erased:{subject_ref}"

    def state_high_water(self, shard: int) -> str:
        """Hash: "<tenant>/<session_id>" -> its newest state version still in the WAL."""
        return f"{self.tag(shard)}:sthw"

    def subject(self, tenant: str, subject_id: str) -> SubjectKeys:
        # A subject's memories hash to a shard like a session named "@<subject_id>" would
        # ('@' cannot start a session id, so no session shares these keys).
        shard = shard_of(tenant, f"@{subject_id}", self.shards)
        base = f"{self.tag(shard)}:m:{tenant}:{subject_id}"
        return SubjectKeys(
            shard=shard,
            memories=f"{base}:mem",
            accessed=f"{base}:acc",
            embeddings=f"{base}:emb",
            wal=self.wal(shard),
            pending_ids=self.pending_memory_ids(shard),
            tenant_bytes=self.tenant_bytes(shard),
            pressure=self.pressure(shard),
            lease=f"{base}:lease",
            tenant=tenant,
            subject_id=subject_id,
        )

    def pending_memory_ids(self, shard: int) -> str:
        """Hash: memory_id -> "<tenant>/<subject_id>" of memories not yet durable."""
        return f"{self.tag(shard)}:mids"

    def all_pending_memory_ids(self) -> list[str]:
        return [self.pending_memory_ids(shard) for shard in range(self.shards)]

    def wal(self, shard: int) -> str:
        return f"{self.tag(shard)}:wal"

    def lease(self, shard: int) -> str:
        return f"{self.tag(shard)}:lease"

    def dead_letters(self, shard: int) -> str:
        return f"{self.tag(shard)}:dead"

    def needs_newer(self, shard: int) -> str:
        """String "<kind>/<version>": this shard holds an entry older workers do not know; they
        skip the shard until a worker that knows it takes over (rolling upgrades)."""
        return f"{self.tag(shard)}:newer"

    def failing(self, shard: int) -> str:
        """Hash: WAL entry id -> when it was first found failing (for dead-letter records)."""
        return f"{self.tag(shard)}:failing"

    def high_water(self, shard: int) -> str:
        """Hash: "<tenant>/<session_id>" -> its newest seq still in the WAL. A forgotten session
        continues above it even when the store has not caught up yet."""
        return f"{self.tag(shard)}:hw"

    def tenant_bytes(self, shard: int) -> str:
        """Hash: tenant -> bytes of its WAL entries in this shard not yet durable (quotas)."""
        return f"{self.tag(shard)}:tq"

    def pressure(self, shard: int) -> str:
        """String, short TTL: set on every shard by drainers while Redis memory is past
        ``redis_memory_high_ratio``; appends fail fast while it exists."""
        return f"{self.tag(shard)}:full"

    def summary_pending(self, shard: int) -> str:
        """Zset: "<tenant>/<session_id>" -> ms when its pending summary was requested."""
        return f"{self.tag(shard)}:sumq"

    def llm_usage(self, tenant: str, day: str) -> str:
        """Hash: one tenant's LLM tokens (prompt, completion) and calls on a UTC day (YYYYMMDD)."""
        return f"{self.prefix}:usage:{tenant}:{day}"

    def tenant_budgets(self) -> str:
        """Hash: tenant -> daily token budget, overriding MEMSCRIBE_TENANT_DAILY_TOKEN_BUDGET."""
        return f"{self.prefix}:budgets"

    def deferred_tenants(self) -> str:
        """Set: tenants with summaries deferred because their daily budget is spent."""
        return f"{self.prefix}:deferred"

    def deferred_sessions(self, tenant: str) -> str:
        """Zset: one tenant's deferred sessions -> ms when deferred."""
        return f"{self.prefix}:deferred:{tenant}"

    def purge_lease(self) -> str:
        """String: the lease of maintenance.purge_expired (one run at a time)."""
        return f"{self.prefix}:purge:lease"

    def backup_lease(self) -> str:
        """String: the lease of a backup run (maintenance.backup or `memscribe backup run`)."""
        return f"{self.prefix}:backups:lease"

    def backup_slot(self, slot: int) -> str:
        """String: claimed by the first maintenance.backup of a schedule slot (one per slot,
        however many beats sent it)."""
        return f"{self.prefix}:backups:slot:{slot}"

    def prune_lease(self) -> str:
        """String: the lease of maintenance.prune_backups."""
        return f"{self.prefix}:backups:prune:lease"

    def backup_last(self) -> str:
        """Hash: the newest completed backup (id, kind, completed_at, rows) for health."""
        return f"{self.prefix}:backups:last"

    # --- beat failover (worker/leader.py) ---
    def beat_leader(self) -> str:
        """String: the token ("host:pid:random") of the one beat allowed to send (PX lock)."""
        return f"{self.prefix}:beat:leader"

    def beat_slot(self, entry: str, slot: int) -> str:
        """String: claimed by the beat that sends schedule entry ``entry`` in interval slot
        ``slot`` (floor(now / interval)): one send per slot however many beats run."""
        return f"{self.prefix}:beat:slot:{entry}:{slot}"

    def beat_sends(self) -> str:
        """Stream (capped): one entry per periodic task beat sent (entry, slot, owner)."""
        return f"{self.prefix}:beat:sends"

    def periodic_lease(self, task: str) -> str:
        """String: the lease of a periodic task that has no lease of its own
        (llm.resend_stale, llm.resume_deferred): an overlapping run skips."""
        return f"{self.prefix}:periodic:{task}:lease"

    def task_dead_letters(self) -> str:
        return f"{self.prefix}:dead:tasks"

    def backoff(self, name: str) -> str:
        return f"{self.prefix}:backoff:{name}"

    def all_wals(self) -> list[str]:
        return [self.wal(shard) for shard in range(self.shards)]

    # The cache's keys share the hash tag {cache}: a read's MGET of stamps and a write's MULTI
    # touch one slot on a Redis Cluster. Names are validated by core/cache before they get here.
    def cache_value(self, name: str) -> str:
        """String: one cached value, JSON, with the cache's TTL."""
        return f"{self.prefix}:{{cache}}:v:{name}"

    def cache_stamp(self, name: str) -> str:
        """String: the version stamp of one cached value (changed by every set and delete)."""
        return f"{self.prefix}:{{cache}}:s:{name}"

    def cache_tag(self, tag: str) -> str:
        """Set: the cache keys written with ``tag`` (the tag index)."""
        return f"{self.prefix}:{{cache}}:t:{tag}"

    # A cache namespace (core/cache/namespace.py; the LangChain store) keeps its entries under
    # the cache's value and stamp shapes, named "~<tenant>:<namespace>:<hex of the key's UTF-8>":
    # '~' is outside the names Cache accepts and tenant and namespace are ids without ':', so
    # no two namespaces, and no Cache.set, share a name.
    def cache_entry(self, tenant: str, namespace: str, hex_key: str) -> str:
        """The cache name of one key of a namespace (pass "" for the names' common prefix)."""
        return f"~{tenant}:{namespace}:{hex_key}"

    def cache_tenant_namespaces(self, tenant: str) -> str:
        """Set: the tenant's cache namespaces (the LangChain store's), for erase_tenant."""
        return f"{self.prefix}:{{cache}}:xt:{tenant}"

    def cache_index(self, tenant: str, namespace: str) -> str:
        """Zset, every score 0: a namespace's keys as given, so a prefix walk is ZRANGEBYLEX
        over our own index (never SCAN MATCH)."""
        return f"{self.prefix}:{{cache}}:x:{tenant}:{namespace}"
