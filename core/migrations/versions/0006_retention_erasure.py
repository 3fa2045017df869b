"""retention (expires_at everywhere, purge indexes) and erasure (floors, tombstones, receipts)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Purge deletes "WHERE expires_at < now() ORDER BY expires_at LIMIT n": a partial index on
# expires_at per table, so a purge run never scans a table and rows kept forever (NULL) cost
# the index nothing.
_EXPIRING = ("sessions", "messages", "summaries", "memories", "state_history", "agent_results")


def upgrade() -> None:
    # A session's floors: everything at or below them was cleared or erased. Every writer of
    # the session's data compares against them under the session row's lock, so a write that
    # was in flight when the clear happened can never bring the data back (docs/erasure.md).
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(
            sa.Column("cleared_seq", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("cleared_state_version", sa.BigInteger, nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("cleared_result_position", sa.BigInteger, nullable=False, server_default="0")
        )
        # The receipt of the erasure that cleared this session (its subject_id is gone).
        batch.add_column(sa.Column("erased_by", sa.String(64), nullable=True))
    for table in ("summaries", "state_history"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    for table in ("messages", "summaries", "memories"):
        # The id of the data key the row's content is encrypted under (NULL: plaintext).
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("key_id", sa.String(64), nullable=True))
    for table in _EXPIRING:
        op.create_index(
            f"ix_{table}_expires_at",
            table,
            ["expires_at"],
            postgresql_where=sa.text("expires_at IS NOT NULL"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
        )
    op.create_index("ix_llm_usage_day", "llm_usage", ["day"])
    # delete_message leaves the message's id and seq behind (never its content): a WAL entry
    # of it that was not yet drained is dropped, and the seq is never reused.
    op.create_table(
        "message_tombstones",
        sa.Column("message_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_message_tombstones"),
    )
    op.create_index("ix_message_tombstones_session", "message_tombstones", ["tenant", "session_id"])
    # Erased or forgotten-for-good memory ids: a remember still in the WAL is dropped.
    op.create_table(
        "memory_tombstones",
        sa.Column("memory_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("receipt_id", sa.String(64), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("memory_id", name="pk_memory_tombstones"),
    )
    # One row per erasure request: counts per store, never personal data (the subject only
    # as a keyed hash).
    op.create_table(
        "erasure_receipts",
        sa.Column("receipt_id", sa.String(64), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_ref", sa.String(64), nullable=True),
        sa.Column("args_digest", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("counts", sa.JSON, nullable=True),
        sa.Column("key_ids", sa.JSON, nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("receipt_id", name="pk_erasure_receipts"),
        sa.UniqueConstraint("request_id", name="uq_erasure_receipts_request"),
    )
    op.create_index("ix_erasure_receipts_subject", "erasure_receipts", ["tenant", "subject_ref"])


def downgrade() -> None:
    op.drop_index("ix_erasure_receipts_subject", table_name="erasure_receipts")
    op.drop_table("erasure_receipts")
    op.drop_table("memory_tombstones")
    op.drop_index("ix_message_tombstones_session", table_name="message_tombstones")
    op.drop_table("message_tombstones")
    op.drop_index("ix_llm_usage_day", table_name="llm_usage")
    for table in _EXPIRING:
        op.drop_index(f"ix_{table}_expires_at", table_name=table)
    for table in ("messages", "summaries", "memories"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("key_id")
    for table in ("summaries", "state_history"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("expires_at")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("erased_by")
        batch.drop_column("cleared_result_position")
        batch.drop_column("cleared_state_version")
        batch.drop_column("cleared_seq")
