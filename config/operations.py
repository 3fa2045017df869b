"""The settings of running memscribe: worker families, beat failover, backups, metrics and
health, Flower. ``Settings`` (config/settings.py) inherits them; checks that join them with
other settings (time limits against the visibility timeout) live there."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class OperationsSettings(BaseSettings):
    """Fields of ``Settings`` for operating memscribe (read through ``Settings`` only)."""

    # --- workers per family (`memscribe worker persist|llm|maintenance`; worker/families.py) ---
    # Prefork processes of a persist and of a maintenance worker.
    persist_concurrency: int = Field(default=2, ge=1, le=256)
    maintenance_concurrency: int = Field(default=1, ge=1, le=256)
    # The llm worker (I/O-bound, bursty) autoscales between "MAX,MIN" processes; empty: a fixed
    # pool of llm_concurrency.
    llm_autoscale: str = Field(default="8,1", pattern=r"^\s*(\d+\s*,\s*\d+)?\s*$")
    llm_concurrency: int = Field(default=4, ge=1, le=256)
    # An autoscaled pool shrinks once it received no task and did not grow for this long
    # (Celery's AUTOSCALE_KEEPALIVE; it also checks this often, so shrinking takes < 2x this).
    # Below 60 s: beat sends the llm queue a tick a minute, which a longer one would never see
    # a gap between, and the pool would stay grown.
    autoscale_keepalive_s: float = Field(default=30.0, gt=0, le=50)
    # Hard time limit of each family's tasks (the soft limit is 90 % of it); a task that sets
    # its own (maintenance.backup) keeps it. task_time_limit_s stays the default of any other.
    persist_time_limit_s: int = Field(default=60, ge=2)
    llm_time_limit_s: int = Field(default=300, ge=2)
    maintenance_time_limit_s: int = Field(default=6 * 3600, ge=2)

    # --- beat failover (worker/leader.py; docs/operations.md "Beat failover") ---------------
    # Any number of `memscribe beat` may run; the one holding the Redis lock <prefix>:beat:leader
    # sends, renewing it at least every third of this TTL. A standby takes over within
    # TTL + TTL/3 (13.3 s by default) after the active one dies.
    beat_lock_ttl_s: float = Field(default=10.0, ge=1.0, le=300.0)

    # --- backups (core/backups; docs/backups.md) ----------------------------------------------
    # Where backups go: file://path (relative to the working directory, or file:///absolute)
    # or s3://bucket/prefix (boto3; AWS credentials from the usual variables; a MinIO or other
    # S3-compatible server through s3_endpoint_url).
    backup_url: str = "file://./var/backups"
    s3_endpoint_url: str = ""
    # Multipart part size for S3 (its minimum is 5 MiB), and the write buffer for files.
    backup_part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=64 * 1024, le=1 << 30)
    # maintenance.backup on beat: one backup per interval (a daily one by default); every
    # backup_full_every-th one is full, the others incremental on the newest one.
    backup_interval_s: float = Field(default=24 * 3600.0, ge=1.0)
    backup_full_every: int = Field(default=7, ge=1, le=1000)
    # maintenance.prune_backups keeps the newest backup_keep_full full backups (and the
    # incrementals on them), never the newest one that verifies.
    backup_keep_full: int = Field(default=4, ge=1, le=10_000)
    backup_prune_interval_s: float = Field(default=3600.0, ge=1.0)
    # Rows per read batch (and per encrypted frame group) while streaming a snapshot.
    backup_batch_rows: int = Field(default=5_000, ge=100, le=200_000)
    # A backup's lease, renewed after every batch: a killed run's lease expires in this.
    backup_lease_s: float = Field(default=120.0, ge=2.0, le=3600.0)
    # Every backup also writes a key-store export (the wrapped data keys, under the KEK), for a
    # disaster that takes the key store too. Kept this long only: a subject erased since an
    # export stays recoverable from it until it is pruned (docs/backups.md).
    backup_export_keys: bool = True
    keystore_export_retention_s: int = Field(default=7 * 24 * 3600, ge=60)

    # --- observability: Prometheus metrics and health (core/observability) --------------------
    # Where worker processes write their counters and histograms (prometheus-client's
    # multiprocess mode: PROMETHEUS_MULTIPROC_DIR) and `memscribe metrics` reads them. One
    # directory per host, shared by every memscribe process on it.
    metrics_dir: str = "./var/metrics"
    # `memscribe health`: unhealthy when the WAL's backlog (pending + undelivered over every
    # shard) reaches this many entries, and, when above 0, when the newest backup is older.
    health_max_lag: int = Field(default=100_000, ge=0)
    health_max_backup_age_s: float = Field(default=0.0, ge=0)
    # The price of LLM tokens, for memscribe_llm_cost_usd_total (0: cost not counted).
    llm_prompt_usd_per_1k_tokens: float = Field(default=0.0, ge=0)
    llm_completion_usd_per_1k_tokens: float = Field(default=0.0, ge=0)

    # --- Flower (memscribe flower; docs/operations.md "Flower") ----------------------------
    # Where Flower listens: loopback unless set (0.0.0.0 inside a container whose port is
    # published on the host's loopback only).
    flower_address: str = "127.0.0.1"
    flower_port: int = Field(default=5555, ge=1, le=65535)
    # Basic auth is required: without flower_password `memscribe flower` refuses to start,
    # unless flower_auth is false (then anyone who reaches the port sees every task).
    flower_auth: bool = True
    flower_user: str = Field(default="admin", pattern=r"^[^:,\s]{1,64}$")
    flower_password: SecretStr = SecretStr("")

    @property
    def llm_autoscale_range(self) -> tuple[int, int] | None:
        """``llm_autoscale`` as (max, min) processes; None: a fixed pool."""
        if not self.llm_autoscale.strip():
            return None
        high, low = (int(part) for part in self.llm_autoscale.split(","))
        if not high >= low >= 1:
            raise ValueError(f"llm_autoscale needs MAX >= MIN >= 1, got {self.llm_autoscale!r}")
        return high, low
