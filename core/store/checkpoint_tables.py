"""The durable schema of LangGraph checkpoints (core/checkpoints, migration 0008).

A thread is a session id (``session_id`` holds the LangGraph ``thread_id``). Serialized
values (the serde's bytes) are stored as base64 text, exactly as the WAL carries them: the
drainer moves them without decoding, and a backup's JSON rows carry them as they are.
``written_us`` is the Redis clock when the write was accepted; a deleted thread's floor
(``checkpoint_threads.deleted_us``) hides every row written at or before it, and the purge
(core/retention) deletes them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    text,
)

from core.store.db import ID, JSONDocument, _expiring, metadata

CHECKPOINT_ID = String(64)
SERDE_TYPE = String(32)
WHEN = DateTime(timezone=True)


def _thread_columns() -> list[Column[object]]:
    return [
        Column("tenant", ID, nullable=False),
        Column("session_id", ID, nullable=False),
        Column("checkpoint_ns", Text, nullable=False),
        # The data subject the saver was told the thread is about (MemscribeSaver's
        # subject_key), or NULL: erase_subject finds its threads by it, and a backup seals the
        # row under the subject's key (core/backups: owner "self").
        Column("subject_id", ID, nullable=True),
    ]


checkpoints = Table(
    "checkpoints",
    metadata,
    *_thread_columns(),
    Column("checkpoint_id", CHECKPOINT_ID, nullable=False),
    Column("parent_checkpoint_id", CHECKPOINT_ID, nullable=True),
    Column("type", SERDE_TYPE, nullable=False),
    # The checkpoint without its channel values (those are blobs), serialized, base64.
    Column("checkpoint", Text, nullable=False),
    Column("metadata", JSONDocument, nullable=False),
    # [[channel, version], ...]: the blobs this checkpoint's channel_versions name.
    Column("blobs", JSONDocument, nullable=False),
    Column("written_us", BigInteger, nullable=False),
    Column("expires_at", WHEN, nullable=True),
    PrimaryKeyConstraint(
        "tenant", "session_id", "checkpoint_ns", "checkpoint_id", name="pk_checkpoints"
    ),
    _expiring("checkpoints"),
    Index(
        "ix_checkpoints_subject",
        "tenant",
        "subject_id",
        postgresql_where=text("subject_id IS NOT NULL"),
        sqlite_where=text("subject_id IS NOT NULL"),
    ),
)

# One row per (channel, version): a checkpoint stores only the channels that changed.
checkpoint_blobs = Table(
    "checkpoint_blobs",
    metadata,
    *_thread_columns(),
    Column("channel", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("type", SERDE_TYPE, nullable=False),
    Column("blob", Text, nullable=True),
    Column("written_us", BigInteger, nullable=False),
    Column("expires_at", WHEN, nullable=True),
    PrimaryKeyConstraint(
        "tenant",
        "session_id",
        "checkpoint_ns",
        "channel",
        "version",
        name="pk_checkpoint_blobs",
    ),
    _expiring("checkpoint_blobs"),
)

# Pending writes of a checkpoint's tasks (put_writes).
checkpoint_writes = Table(
    "checkpoint_writes",
    metadata,
    *_thread_columns(),
    Column("checkpoint_id", CHECKPOINT_ID, nullable=False),
    Column("task_id", Text, nullable=False),
    Column("idx", Integer, nullable=False),
    Column("channel", Text, nullable=False),
    Column("type", SERDE_TYPE, nullable=False),
    Column("blob", Text, nullable=True),
    Column("task_path", Text, nullable=False),
    Column("written_us", BigInteger, nullable=False),
    Column("expires_at", WHEN, nullable=True),
    PrimaryKeyConstraint(
        "tenant",
        "session_id",
        "checkpoint_ns",
        "checkpoint_id",
        "task_id",
        "idx",
        name="pk_checkpoint_writes",
    ),
    _expiring("checkpoint_writes"),
)

# delete_thread's floors: every checkpoint row of the thread written at or before
# ``deleted_us`` is gone for readers at once and for the purge to delete.
checkpoint_threads = Table(
    "checkpoint_threads",
    metadata,
    Column("tenant", ID, nullable=False),
    Column("session_id", ID, nullable=False),
    Column("deleted_us", BigInteger, nullable=False),
    Column("deleted_at", WHEN, nullable=False),
    # The erasure receipt that deleted the thread (maintenance.erase deletes its rows), or NULL.
    Column("erased_by", String(64), nullable=True),
    PrimaryKeyConstraint("tenant", "session_id", name="pk_checkpoint_threads"),
)
