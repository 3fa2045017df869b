"""One typed settings object, read once from the environment (prefix ``MEMSCRIBE_``)."""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from config.operations import OperationsSettings


def _with_db(redis_url: str, db: int) -> str:
    """The same Redis server as ``redis_url`` with another logical database."""
    parts = urlsplit(redis_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


class KeySettingError(Exception):
    """A malformed key setting. Deliberately not a ValueError: pydantic would wrap that in a
    ValidationError that echoes every input, the secret included, into logs."""


def decode_key(text: str, name: str, *, exact_bytes: int = 0, min_bytes: int = 0) -> bytes:
    """The bytes of a base64 key setting, or KeySettingError naming the setting (never the
    value)."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeySettingError(f"{name} must be base64") from None
    if exact_bytes and len(raw) != exact_bytes:
        raise KeySettingError(f"{name} must decode to {exact_bytes} bytes, got {len(raw)}")
    if len(raw) < min_bytes:
        raise KeySettingError(f"{name} must decode to at least {min_bytes} bytes, got {len(raw)}")
    return raw


def previous_keks(text: str) -> dict[str, bytes]:
    """``previous_keks`` ("id:base64,id:base64") as {kek_id: key}."""
    found: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kek_id, sep, encoded = item.partition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", kek_id):
            raise KeySettingError("previous_keks must be 'id:base64' items separated by commas")
        found[kek_id] = decode_key(encoded, f"previous_keks[{kek_id}]", exact_bytes=32)
    return found


class Settings(OperationsSettings):
    """Everything memscribe reads from its environment. Built once, passed explicitly."""

    model_config = SettingsConfigDict(env_prefix="MEMSCRIBE_", extra="ignore", frozen=True)

    # --- stores ---------------------------------------------------------------------------
    redis_url: str = "redis://localhost:6379/0"
    # True: redis_url names any node of a Redis Cluster (database 0); every component then uses
    # redis.cluster.RedisCluster. The broker stays a plain server: set broker_url.
    redis_cluster: bool = False
    # Empty means: the Redis server of redis_url, database 1 (kept apart from the data).
    broker_url: str = ""
    database_url: str = "sqlite:///./var/memscribe.db"
    key_prefix: str = Field(default="ms", pattern=r"^[A-Za-z0-9_-]{1,32}$")

    # --- write-ahead log and drainer ---------------------------------------------------------
    shards: int = Field(default=16, ge=1, le=1024)
    # Entries per drained batch: larger batches amortize the per-batch round trips (measured:
    # 2,000 is about 1.3x the throughput of 500 with one worker process).
    batch_size: int = Field(default=2000, ge=1, le=10_000)
    # A shard's drain lease; entries a consumer left pending longer than this are reclaimed.
    drain_lease_ms: int = Field(default=10_000, ge=100)
    # One flush task drains (polling when idle) for this long, then returns; beat starts the
    # next one. Keeps lag near the poll interval rather than the beat interval.
    flush_budget_s: float = Field(default=1.0, gt=0)
    flush_interval_s: float = Field(default=1.0, gt=0)

    # --- session memory --------------------------------------------------------------------
    buffer_max_messages: int = Field(default=30, ge=1, le=10_000)
    # How many recent message ids per session are remembered to make a retried append a no-op.
    dedupe_window: int = Field(default=128, ge=1, le=100_000)
    session_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)

    # --- summarization (defaults; per-session overrides via MemoryClient.configure_session) --
    # A session whose unsummarized tokens reach this (and has no summary pending) crosses the
    # trigger: the append marks its WAL entry and the drainer enqueues llm.summarize.
    summary_trigger_tokens: int = Field(default=3000, ge=1)
    # The buffer's token cap (beside buffer_max_messages): the oldest messages leave the buffer
    # past it, still unsummarized (the fold reads them from the durable store).
    buffer_max_tokens: int = Field(default=4000, ge=1)
    # The newest turns a fold leaves verbatim in the buffer (must stay below the trigger).
    keep_recent_tokens: int = Field(default=1000, ge=0)
    # "auto": OpenAI when openai_api_key is set, else the local extractive summarizer.
    summarizer: Literal["auto", "openai", "local"] = "auto"
    openai_api_key: SecretStr = SecretStr("")
    # Empty: OpenAI's API. Any OpenAI-compatible server: http://host:port/v1
    openai_base_url: str = ""
    # Empty: the same model as MEMSCRIBE_MODEL.
    summary_model: str = ""
    llm_timeout_s: float = Field(default=30.0, gt=0)
    summary_max_tokens: int = Field(default=512, ge=16)
    # The largest fold one LLM call takes; a longer backlog is folded over several crossings.
    summary_max_input_tokens: int = Field(default=12_000, ge=64)
    # One summarize holds the session's lease this long at most (covers the LLM call).
    summary_lease_s: float = Field(default=120.0, gt=0)
    # A pending summary older than this is presumed lost (its task dropped) and the next
    # append past the trigger asks again.
    summary_pending_timeout_s: float = Field(default=3600.0, gt=0)
    # A pending summary with no task running this long is sent again (llm.resend_stale, every
    # minute): its publish failed or its task was lost. A duplicate is a no-op.
    summary_resend_after_s: float = Field(default=300.0, gt=0)
    # Tokens (prompt + completion) one tenant may spend on summaries per UTC day; 0: no limit.
    tenant_daily_token_budget: int = Field(default=0, ge=0)

    # --- long-term memories (remember / recall / consolidation; docs/memories.md) -----------
    max_memory_bytes: int = Field(default=8_192, ge=1)
    max_memory_tags: int = Field(default=32, ge=0, le=256)
    # The Redis view of a subject's live memories (what recall reads) lives this long after
    # its last use; a subject Redis no longer holds is read from the durable store once.
    memory_cache_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    # Decay: a memory not recalled for this long (its own ttl_s wins) no longer comes back
    # from recall; 0 = never. Pinned memories never decay.
    memory_ttl_low_s: int = Field(default=30 * 24 * 3600, ge=0)
    memory_ttl_medium_s: int = Field(default=180 * 24 * 3600, ge=0)
    memory_ttl_high_s: int = Field(default=365 * 24 * 3600, ge=0)
    memory_ttl_critical_s: int = Field(default=0, ge=0)
    # context(memories=k): tokens the memories may take; past it lower priorities go first
    # and CRITICAL ones are kept whatever they cost.
    memory_context_tokens: int = Field(default=1000, ge=0)
    # Near-duplicate detection: "none" uses the local lexical similarity only; "openai" any
    # OpenAI-compatible /v1/embeddings (embedding_base_url, else openai_base_url); "local" the
    # MiniLM embedder of the `local-embeddings` extra.
    embeddings: Literal["none", "openai", "local"] = "none"
    embedding_model: str = "text-embedding-3-small"
    embedding_base_url: str = ""
    # Similarity at or above which two memories are near-duplicates (docs/memory-similarity.md).
    # On bench/data/memory_pairs.jsonl no single score separates paraphrases from look-alike
    # facts ("allergic to peanuts" / "to shellfish"): precision 0.95 is reached only where
    # recall is nil. Lexical 0.7 catches restatements (a fact with a word or two added or
    # changed scores 0.7-0.85); a look-alike merged by mistake loses nothing, since the merge
    # guard and the local merger keep every source's words. Embeddings: the lowest threshold
    # of precision >= 0.95 on the tune half.
    memory_lexical_threshold: float = Field(default=0.7, gt=0, le=1)
    memory_embedding_threshold: float = Field(default=0.98, gt=0, le=1)
    # "auto": the LLM when openai_api_key is set, else the local merger (no LLM).
    memory_merger: Literal["auto", "openai", "local"] = "auto"
    # The merge guard: an LLM merge shorter than min_ratio x or longer than max_ratio x the
    # longest source, or keeping under min_word_share of the sources' distinct content
    # words, is refused (the sources stay as they are).
    merge_min_ratio: float = Field(default=0.4, gt=0)
    merge_max_ratio: float = Field(default=4.0, gt=1)
    merge_min_word_share: float = Field(default=0.5, ge=0, le=1)
    consolidate_interval_s: float = Field(default=3600.0, gt=0)
    # One subject's consolidation holds its lease this long at most (covers its LLM calls).
    consolidate_lease_s: float = Field(default=300.0, gt=0)

    # --- backpressure (append fails fast with BackpressureError, retryable) -----------------
    # Undrained WAL entries per shard at which appends to that shard are refused (0: no limit).
    # At 16 shards the default holds about 3.2M messages: minutes of a stalled drain at full load.
    max_wal_backlog: int = Field(default=200_000, ge=0)
    # Drainers flag every shard while Redis used_memory passes this share of maxmemory (when a
    # maxmemory is set), so appends fail fast before noeviction refuses writes with a raw OOM.
    redis_memory_high_ratio: float = Field(default=0.9, gt=0, le=1)
    # Bytes of not-yet-durable messages one tenant may hold in Redis (0: no quota). Enforced per
    # shard as budget / shards: sessions spread evenly over shards by hash.
    tenant_backlog_budget_bytes: int = Field(default=0, ge=0)
    # Once a shard's backlog passes (1 - reserve) of max_wal_backlog, the rest is reserved for
    # tenants below (1 - reserve) of their budget: one heavy tenant cannot fill it for all.
    tenant_backlog_reserve: float = Field(default=0.2, ge=0, lt=1)

    # --- input limits ------------------------------------------------------------------------
    max_content_bytes: int = Field(default=65_536, ge=1)
    max_metadata_bytes: int = Field(default=8_192, ge=2)

    # --- tokens ------------------------------------------------------------------------------
    tokenizer: Literal["tiktoken", "estimate"] = "tiktoken"
    model: str = "gpt-4o-mini"

    # --- failures ----------------------------------------------------------------------------
    # A WAL entry delivered more times than this is dead-lettered (it keeps killing drainers).
    max_deliveries: int = Field(default=10, ge=1)
    # Task retries: exponential backoff with full jitter, base * 2**retry capped at retry_cap_s.
    retry_base_ms: int = Field(default=1000, ge=1)
    retry_cap_s: float = Field(default=300.0, gt=0)
    max_retries: int = Field(default=8, ge=0)
    # While the durable store fails, drainers back off (shared through Redis) instead of spinning.
    store_backoff_base_ms: int = Field(default=500, ge=1)
    store_backoff_cap_s: float = Field(default=30.0, gt=0)

    # --- cache (core/cache; docs/cache.md) -------------------------------------------------
    # The in-process level: bounded by entries and by JSON-encoded bytes, LRU beyond either.
    cache_local_max_entries: int = Field(default=10_000, ge=1)
    cache_local_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # A value's lifetime in both levels when ``set`` names none.
    cache_default_ttl_s: float = Field(default=300.0, gt=0)
    # The circuit breaker on the cache's Redis: open after this many consecutive connection
    # failures or timeouts; after breaker_cooldown_s one probe (half-open) may close it.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_cooldown_s: float = Field(default=1.0, gt=0, le=4.0)

    # --- conversation and agent state (core/state; docs/state.md) ----------------------------
    # Redis lifetimes per kind, refreshed by every write of that kind. They bound what Redis
    # holds, never what is durable: a kind that expired is read back from the store.
    state_ttl_s: int = Field(default=3600, ge=1)
    state_evaluation_ttl_s: int = Field(default=60, ge=1)
    state_task_ttl_s: int = Field(default=300, ge=1)
    state_context_ttl_s: int = Field(default=300, ge=1)
    state_results_ttl_s: int = Field(default=1800, ge=1)
    # The task stack's bounds: tasks per session, checkpoints per task.
    state_max_tasks: int = Field(default=10, ge=1, le=1000)
    state_max_checkpoints: int = Field(default=50, ge=1, le=10_000)
    # One state field's JSON, at most (a patch carries only the fields that changed).
    state_max_field_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # update_state: attempts after a version conflict before ConflictError.
    state_update_retries: int = Field(default=100, ge=0, le=10_000)
    # Agent results: consumed ones kept for inspection; unconsumed ones held at most.
    state_results_retention: int = Field(default=100, ge=0, le=100_000)
    state_results_max_unconsumed: int = Field(default=10_000, ge=1, le=1_000_000)
    # LangGraph checkpoints (core/checkpoints): one put's or put_writes' serialized size at
    # most, and how long Redis holds a thread's checkpoints after its last write.
    checkpoint_max_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    checkpoint_ttl_s: int = Field(default=3600, ge=1)
    max_result_bytes: int = Field(default=64 * 1024, ge=16, le=16 * 1024 * 1024)

    # --- retention (core/retention; docs/retention.md) -----------------------------------
    # How long each kind of data is kept after it is written, in seconds; 0 = keep forever.
    # Rows get expires_at when they are written (rows written before a change keep theirs).
    # Messages and summaries: a year. Long enough that a returning user finds last season's
    # conversations, short enough to meet GDPR's storage limitation without any setting.
    retention_messages_s: int = Field(default=365 * 24 * 3600, ge=0)
    retention_summaries_s: int = Field(default=365 * 24 * 3600, ge=0)
    # Memories are what the app chose to keep about a person, and decay already hides the
    # stale ones (memory_ttl_*_s; purge deletes a memory once it has decayed). A hard age limit
    # is the tenant's legal call, so the defaults add none: 0.
    retention_memories_low_s: int = Field(default=0, ge=0)
    retention_memories_medium_s: int = Field(default=0, ge=0)
    retention_memories_high_s: int = Field(default=0, ge=0)
    retention_memories_critical_s: int = Field(default=0, ge=0)
    # State history and agent results (and, with the session row, sessions.state): 90 days.
    # An agent's scratch state is worth little after a quarter, and its history is an audit
    # trail an operator reads within weeks.
    retention_state_s: int = Field(default=90 * 24 * 3600, ge=0)
    # Dead letters hold message content: 14 days gives an operator two weeks to look at and
    # replay them. The streams are shared by tenants, so the shortest tenant value wins.
    retention_dead_letters_s: int = Field(default=14 * 24 * 3600, ge=0)
    # llm_usage rows (per tenant and UTC day): 400 days covers a year of invoices and audits.
    retention_usage_s: int = Field(default=400 * 24 * 3600, ge=0)
    # Per-tenant overrides, JSON: {"acme": {"messages": 86400, "memories_low": 0, ...}}. Kinds:
    # core.retention.policy.KINDS; values as above (0 or 60 s..100 years).
    retention_tenants: dict[str, dict[str, int]] = Field(default_factory=dict)
    # maintenance.purge_expired runs on beat this often; one run deletes at most
    # purge_max_rows_per_run rows, purge_batch_rows per statement (one short transaction
    # each, so no lock is held long and appends never wait behind a purge).
    purge_interval_s: float = Field(default=60.0, gt=0)
    purge_batch_rows: int = Field(default=5_000, ge=1, le=100_000)
    purge_max_rows_per_run: int = Field(default=200_000, ge=1)

    # --- Celery ------------------------------------------------------------------------------
    # Must stay above the longest retry countdown, or kombu redelivers a task still waiting.
    visibility_timeout_s: int = Field(default=3600, ge=60)
    task_time_limit_s: int = Field(default=300, ge=1)
    # Supervision (`memscribe worker` / `memscribe beat`): a persist worker is restarted when
    # no flush completed for this many flush intervals while a backlog exists (kombu can leave
    # a worker alive but no longer consuming after a broker restart), and beat when it sent no
    # flush tick for as long. The supervisor checks every worker_check_interval_s (one EXISTS).
    worker_stall_intervals: int = Field(default=30, ge=3)
    worker_check_interval_s: float = Field(default=5.0, gt=0)

    # --- encryption (core/crypto; docs/encryption.md) ---------------------------------------
    # Store the content of a subject's messages, summaries and memories encrypted under the
    # subject's data key (crypto-shredding: destroying the key makes every copy unreadable).
    # Off: new rows are plaintext; rows already encrypted stay readable.
    encrypt_content: bool = True
    # The key-encryption key (base64 of 32 random bytes) that wraps every data key, and its id
    # (recorded with each wrapped key). Empty: a development KEK generated once into
    # dev_secrets_path (0600), with a warning in the log; never run production on it.
    kek: SecretStr = SecretStr("")
    kek_id: str = Field(default="kek-1", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    # KEKs being rotated out, "id:base64,id:base64": data keys still wrapped by one of them
    # stay usable until `memscribe keystore rotate` re-wraps them under kek.
    previous_keks: SecretStr = SecretStr("")
    # Key of the keyed hashes (subject_ref, memories' content_hash); base64 of 32+ bytes.
    # Empty: the development file too. Changing it changes every subject_ref.
    hash_key: SecretStr = SecretStr("")
    # Where subject_keys lives. Empty: database_url. Its own database keeps data keys out of
    # the content database's backups (docs/encryption.md).
    keystore_url: str = ""
    dev_secrets_path: str = "./var/dev-secrets.json"

    @model_validator(mode="after")
    def _derive_broker(self) -> Settings:
        if self.redis_cluster:
            # A cluster has database 0 only, and kombu has no Redis Cluster transport.
            if not self.broker_url:
                raise ValueError(
                    "broker_url must be set when redis_cluster is true: the Celery broker is a "
                    "plain Redis server (kombu has no Redis Cluster transport)"
                )
            db = urlsplit(self.redis_url).path.lstrip("/")
            if db not in ("", "0"):
                raise ValueError(
                    f"redis_url must name database 0 when redis_cluster is true, got /{db} "
                    "(Redis Cluster has no other database)"
                )
        if not self.broker_url:
            object.__setattr__(self, "broker_url", _with_db(self.redis_url, 1))
        return self

    @model_validator(mode="after")
    def _visibility_outlasts_retries(self) -> Settings:
        # kombu's Redis transport re-delivers a task whose countdown outlasts the visibility
        # timeout, so the task would run twice: refuse such a configuration at start-up.
        longest_s = max(self.retry_cap_s, self.task_time_limit_s)
        if self.visibility_timeout_s <= longest_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed the longest retry "
                f"countdown or task time limit ({longest_s:g} s)"
            )
        return self

    @model_validator(mode="after")
    def _family_workers(self) -> Settings:
        # Workers per family: a bad autoscale range must stop start-up, not the worker's pool.
        self.llm_autoscale_range  # noqa: B018  (raises ValueError)
        # A persist or llm task outliving the visibility timeout would be redelivered while it
        # runs. Maintenance tasks may run longer: they hold leases (backups) or are idempotent.
        longest_s = max(self.persist_time_limit_s, self.llm_time_limit_s)
        if self.visibility_timeout_s <= longest_s:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed the persist and "
                f"llm time limits ({longest_s} s)"
            )
        return self

    @model_validator(mode="after")
    def _summaries_make_progress(self) -> Settings:
        # A crossing must always leave something to fold, or "one LLM call per crossing" fails.
        if self.keep_recent_tokens >= self.summary_trigger_tokens:
            raise ValueError(
                f"keep_recent_tokens ({self.keep_recent_tokens}) must be below "
                f"summary_trigger_tokens ({self.summary_trigger_tokens})"
            )
        # The session lease must outlive the LLM call it covers, or a second holder could fold
        # while the first still waits for its answer.
        if self.summary_lease_s <= 2 * self.llm_timeout_s:
            raise ValueError(
                f"summary_lease_s ({self.summary_lease_s:g}) must exceed twice llm_timeout_s "
                f"({self.llm_timeout_s:g})"
            )
        return self

    @model_validator(mode="after")
    def _retention_is_valid(self) -> Settings:
        # Imported here: config must not import core at module level (core imports config).
        from core.retention.policy import check_settings

        check_settings(self)
        return self

    @model_validator(mode="after")
    def _encryption_keys(self) -> Settings:
        # A malformed KEK must stop start-up, not the first drain that needs a data key.
        if self.kek.get_secret_value():
            decode_key(self.kek.get_secret_value(), "kek", exact_bytes=32)
        previous_keks(self.previous_keks.get_secret_value())
        if self.hash_key.get_secret_value():
            decode_key(self.hash_key.get_secret_value(), "hash_key", min_bytes=32)
        if not self.keystore_url:
            object.__setattr__(self, "keystore_url", self.database_url)
        # Absolute, so a subprocess started elsewhere (a worker, a test helper) finds the same
        # development keys.
        object.__setattr__(
            self, "dev_secrets_path", str(Path(self.dev_secrets_path).expanduser().resolve())
        )
        return self

    @property
    def tenant_budget_per_shard(self) -> int:
        """A tenant's quota of not-yet-durable bytes as each shard enforces it (sessions spread
        evenly over shards; rounded up); 0: no quota."""
        budget = self.tenant_backlog_budget_bytes
        return -(-budget // self.shards) if budget else 0

    @property
    def worker_stall_after_s(self) -> float:
        """How long without a completed flush (or a beat tick) counts as stalled."""
        return self.worker_stall_intervals * self.flush_interval_s + self.flush_budget_s

    @property
    def summary_model_name(self) -> str:
        return self.summary_model or self.model

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
