"""The durable schema (SQLAlchemy Core), engines, and migrations (Alembic).

PostgreSQL is the target; SQLite is the embedded default for a one-machine try-out and runs the
same flow. The schema here must match the newest Alembic revision (a test compares them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

ID = String(128)
JSONDocument = JSON().with_variant(JSONB(), "postgresql")

metadata = MetaData()


def _expiring(table: str) -> Index:
    """The purge's index: rows with an ``expires_at``, oldest first (migration 0006)."""
    condition = text("expires_at IS NOT NULL")
    return Index(
        f"ix_{table}_expires_at", "expires_at", postgresql_where=condition, sqlite_where=condition
    )


sessions = Table(
    "sessions",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("subject_id", ID, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_seq", BigInteger, nullable=False, server_default="0"),
    Column("state", JSONDocument, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # configure_session's overrides (the fields of the session's Redis config hash), kept here
    # so they survive Redis forgetting the session.
    Column("settings", JSON, nullable=True),
    # The version of ``state`` (core/state): the drainer applies state patches in version
    # order and never lets an older one overwrite a newer one.
    Column("state_version", BigInteger, nullable=False, server_default="0"),
    # Floors: the session's messages (seq), state versions and agent results (position) at or
    # below them were cleared or erased. Writers compare under this row's lock
    # (docs/erasure.md), so a write in flight at the clear can never bring them back.
    Column("cleared_seq", BigInteger, nullable=False, server_default="0"),
    Column("cleared_state_version", BigInteger, nullable=False, server_default="0"),
    Column("cleared_result_position", BigInteger, nullable=False, server_default="0"),
    # The erasure receipt that cleared this session (its subject_id was removed).
    Column("erased_by", String(64), nullable=True),
    PrimaryKeyConstraint("tenant", "session_id", name="pk_sessions"),
    Index("ix_sessions_subject", "subject_id"),
    _expiring("sessions"),
)

messages = Table(
    "messages",
    metadata,
    Column("message_id", ID, nullable=False),
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    # json, not jsonb: jsonb rewrites numbers (2.5e16 comes back as an integer) and key order;
    # json keeps the text the app sent, so metadata round-trips exactly.
    Column("metadata", JSON, nullable=True),
    # created_at is the append time (the client's clock); persisted_at is set by the database
    # when the row is written, so append-to-durable lag is measurable from the data itself.
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("persisted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # The data key ``content`` is encrypted under (core/crypto); NULL: stored as plaintext.
    Column("key_id", String(64), nullable=True),
    PrimaryKeyConstraint("tenant", "session_id", "seq", name="pk_messages"),
    UniqueConstraint("message_id", name="uq_messages_message_id"),
    _expiring("messages"),
)

# The history of a session's rolling summary: each row folds messages from_seq..covers_through_seq
# into the summary that covered everything before from_seq. Idempotent on covers_through_seq.
summaries = Table(
    "summaries",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("covers_through_seq", BigInteger, nullable=False),
    Column("from_seq", BigInteger, nullable=False),
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    # Tokens of the messages folded (from_seq..covers_through_seq), so an adopted summary can
    # lower the session's unsummarized total without reading those messages again.
    Column("folded_tokens", Integer, nullable=False),
    Column("model", String(128), nullable=False),
    Column("prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("completion_tokens", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("key_id", String(64), nullable=True),
    PrimaryKeyConstraint("tenant", "session_id", "covers_through_seq", name="pk_summaries"),
    _expiring("summaries"),
)

# LLM tokens spent per tenant, UTC day and model (summaries today; consolidation later).
llm_usage = Table(
    "llm_usage",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("day", Date, nullable=False),
    Column("model", String(128), nullable=False),
    Column("calls", BigInteger, nullable=False, server_default="0"),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("tenant", "day", "model", name="pk_llm_usage"),
    Index("ix_llm_usage_day", "day"),
)


# Long-term memories about a data subject (core/memories). A memory is live while
# superseded_by is NULL; consolidation points a merged memory's sources at it instead of
# deleting them, and memory_lineage records every merge, so unconsolidate restores them.
memories = Table(
    "memories",
    metadata,
    Column("memory_id", ID, nullable=False),
    Column("tenant", ID, nullable=False),
    Column("subject_id", ID, nullable=False),
    Column("content", Text, nullable=False),
    # sha-256 of the normalized text (core/memories/similarity.normalize): exact duplicates.
    Column("content_hash", String(64), nullable=False),
    # 1 LOW, 2 MEDIUM, 3 HIGH, 4 CRITICAL. Consolidation never touches CRITICAL or pinned ones.
    Column("priority", SmallInteger, nullable=False),
    Column("pinned", Boolean, nullable=False, server_default="0"),
    Column("tags", JSON, nullable=False),
    Column("embedding", JSON, nullable=True),
    Column("embedding_model", String(128), nullable=True),
    Column("access_count", BigInteger, nullable=False, server_default="0"),
    Column("last_accessed", DateTime(timezone=True), nullable=True),
    Column("superseded_by", ID, nullable=True),
    # When consolidation last looked at this memory: a pass only considers clusters with at
    # least one memory it has not examined yet, so a second pass over the same set is a no-op.
    Column("examined_at", DateTime(timezone=True), nullable=True),
    # {"memories": [ids]} for a merge; {"session_id", "from_seq", "to_seq"} (any of them) for
    # a memory taken from a conversation; NULL when the app gave none.
    Column("provenance", JSON, nullable=True),
    # The memory's own decay in seconds since its last recall (NULL: the priority's default).
    Column("ttl_s", BigInteger, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("key_id", String(64), nullable=True),
    PrimaryKeyConstraint("memory_id", name="pk_memories"),
    Index("ix_memories_subject", "tenant", "subject_id"),
    _expiring("memories"),
)

# One row per (merged memory, source): what consolidation folded, and how.
memory_lineage = Table(
    "memory_lineage",
    metadata,
    Column("merged_id", ID, nullable=False),
    Column("source_id", ID, nullable=False),
    Column("tenant", ID, nullable=False),
    Column("subject_id", ID, nullable=False),
    # "exact" (same normalized text), "local" (the no-LLM merger) or "llm:<model>".
    Column("method", String(160), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("merged_id", "source_id", name="pk_memory_lineage"),
    Index("ix_memory_lineage_source", "source_id"),
)


# Every change of a session's state (core/state): who, when, which fields, their new values.
# One row per version; the drainer inserts them exactly once (the primary key).
state_history = Table(
    "state_history",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("prev_version", BigInteger, nullable=False),
    Column("actor", ID, nullable=True),
    Column("schema_version", Integer, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("changes", JSON, nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("tenant", "session_id", "version", name="pk_state_history"),
    _expiring("state_history"),
)

# Agent results of a session (core/state/results.py): taken at most once (consumed_at).
agent_results = Table(
    "agent_results",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("result_id", ID, nullable=False),
    # Put order within the session (assigned in Redis).
    Column("position", BigInteger, nullable=False),
    Column("result", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("consumed_at", DateTime(timezone=True), nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("tenant", "session_id", "result_id", name="pk_agent_results"),
    Index("ix_agent_results_position", "tenant", "session_id", "position"),
    _expiring("agent_results"),
)
# delete_message leaves the message's id and seq (never its content): a WAL entry of it not yet
# drained is dropped by the drainer, and its seq is never reused.
message_tombstones = Table(
    "message_tombstones",
    metadata,
    Column("message_id", ID, nullable=False),
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("message_id", name="pk_message_tombstones"),
    Index("ix_message_tombstones_session", "tenant", "session_id"),
)
# Erased memory ids: a remember of one of them still in the WAL is dropped by the drainer.
memory_tombstones = Table(
    "memory_tombstones",
    metadata,
    Column("memory_id", ID, nullable=False),
    Column("tenant", ID, nullable=False),
    Column("receipt_id", String(64), nullable=True),
    Column("erased_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("memory_id", name="pk_memory_tombstones"),
)
# One row per erasure request (core/erasure): what was removed, per store, as counts. No
# personal data: the subject only as a keyed hash (subject_ref).
erasure_receipts = Table(
    "erasure_receipts",
    metadata,
    Column("receipt_id", String(64), nullable=False),
    Column("request_id", ID, nullable=False),
    Column("scope", String(16), nullable=False),
    Column("tenant", ID, nullable=False),
    Column("subject_ref", String(64), nullable=True),
    # sha-256 of the request's arguments: the same request_id with others is refused.
    Column("args_digest", String(64), nullable=False),
    # pending -> completed | failed; stage: requested (the request's steps are under way),
    # queued (they are done: nothing of before can be written again), erasing, done.
    Column("status", String(16), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("counts", JSON, nullable=True),
    Column("key_ids", JSON, nullable=True),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("receipt_id", name="pk_erasure_receipts"),
    UniqueConstraint("request_id", name="uq_erasure_receipts_request"),
    Index("ix_erasure_receipts_subject", "tenant", "subject_ref"),
)


# Data keys (core/crypto/keystore.py): one live key per (tenant, subject), stored only wrapped
# by a key-encryption key. The subject appears only as a keyed hash (subject_ref). Destroying
# a key nulls wrapped_key and sets destroyed_at; the row stays as the record of its id.
# May live in a database of its own (MEMSCRIBE_KEYSTORE_URL); never part of a backup.
subject_keys = Table(
    "subject_keys",
    metadata,
    Column("key_id", String(64), nullable=False),
    Column("tenant", ID, nullable=False),
    Column("subject_ref", String(64), nullable=False),
    Column("kek_id", String(64), nullable=True),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("destroyed_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("key_id", name="pk_subject_keys"),
    # At most one live key per subject: two drainers creating it at once conflict here, and
    # the loser reads the winner's key.
    Index(
        "uq_subject_keys_live",
        "tenant",
        "subject_ref",
        unique=True,
        postgresql_where=text("destroyed_at IS NULL"),
        sqlite_where=text("destroyed_at IS NULL"),
    ),
)

# One counter per tenant, bumped by every destruction of its keys (in the same transaction).
# A writer locks its tenants' rows FOR SHARE for each write and drops keys it cached under an
# older epoch, so a key destroyed in another process never seals new data (core/crypto).
key_epochs = Table(
    "key_epochs",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("epoch", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("tenant", name="pk_key_epochs"),
)


def insert_for(connection: Connection, table: Table) -> Any:
    """``INSERT`` with ``ON CONFLICT`` support for the connection's dialect."""
    return (pg_insert if connection.dialect.name == "postgresql" else sqlite_insert)(table)


def write_lock(connection: Connection) -> None:
    """On SQLite, take the database's write lock now, before the transaction reads.

    pysqlite starts a transaction only at the first write, so whatever a transaction reads
    before it (floors, tombstones) could change under it before it writes: ``BEGIN
    IMMEDIATE`` makes the read and the write one step, as PostgreSQL's row and advisory locks
    do. A no-op on PostgreSQL, and once the transaction has begun.
    """
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def of_session(table: Table, tenant: str, session_id: str) -> Any:
    """The rows of one session in any table keyed by (tenant, session_id)."""
    return (table.c.tenant == tenant) & (table.c.session_id == session_id)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the drainer; busy_timeout makes two drainer processes wait
    # for each other instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. Create it after forking (one per worker process)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
    # Alembic's ini parser treats '%' specially; URLs may carry percent-escapes.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision`` (idempotent)."""
    if url.startswith("sqlite"):
        make_engine(url).dispose()  # creates the folder of the SQLite file
    command.upgrade(alembic_config(url), revision)


# The checkpoint tables live in their own module (on this metadata); importing them here keeps
# one schema for migrations, backups and tests.
from core.store import checkpoint_tables as checkpoint_tables  # noqa: E402
