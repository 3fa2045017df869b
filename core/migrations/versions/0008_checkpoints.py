"""checkpoints, checkpoint_blobs, checkpoint_writes, checkpoint_threads: LangGraph checkpoints
(core/checkpoints, core/store/checkpoint_tables.py)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_ID = sa.String(128)
_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
_WHEN = sa.DateTime(timezone=True)
_EXPIRING = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


def _thread() -> list[sa.Column[object]]:
    return [
        sa.Column("tenant", _ID, nullable=False),
        sa.Column("session_id", _ID, nullable=False),
        sa.Column("checkpoint_ns", sa.Text, nullable=False),
        sa.Column("subject_id", _ID, nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "checkpoints",
        *_thread(),
        sa.Column("checkpoint_id", sa.String(64), nullable=False),
        sa.Column("parent_checkpoint_id", sa.String(64), nullable=True),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("checkpoint", sa.Text, nullable=False),
        sa.Column("metadata", _JSON, nullable=False),
        sa.Column("blobs", _JSON, nullable=False),
        sa.Column("written_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant", "session_id", "checkpoint_ns", "checkpoint_id", name="pk_checkpoints"
        ),
    )
    op.create_table(
        "checkpoint_blobs",
        *_thread(),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("blob", sa.Text, nullable=True),
        sa.Column("written_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant",
            "session_id",
            "checkpoint_ns",
            "channel",
            "version",
            name="pk_checkpoint_blobs",
        ),
    )
    op.create_table(
        "checkpoint_writes",
        *_thread(),
        sa.Column("checkpoint_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.Text, nullable=False),
        sa.Column("idx", sa.Integer, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("blob", sa.Text, nullable=True),
        sa.Column("task_path", sa.Text, nullable=False),
        sa.Column("written_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint(
            "tenant",
            "session_id",
            "checkpoint_ns",
            "checkpoint_id",
            "task_id",
            "idx",
            name="pk_checkpoint_writes",
        ),
    )
    op.create_table(
        "checkpoint_threads",
        sa.Column("tenant", _ID, nullable=False),
        sa.Column("session_id", _ID, nullable=False),
        sa.Column("deleted_us", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", _WHEN, nullable=False),
        sa.Column("erased_by", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "session_id", name="pk_checkpoint_threads"),
    )
    for table in _EXPIRING:
        op.create_index(
            f"ix_{table}_expires_at",
            table,
            ["expires_at"],
            postgresql_where=sa.text("expires_at IS NOT NULL"),
            sqlite_where=sa.text("expires_at IS NOT NULL"),
        )
    op.create_index(
        "ix_checkpoints_subject",
        "checkpoints",
        ["tenant", "subject_id"],
        postgresql_where=sa.text("subject_id IS NOT NULL"),
        sqlite_where=sa.text("subject_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_checkpoints_subject", table_name="checkpoints")
    for table in _EXPIRING:
        op.drop_index(f"ix_{table}_expires_at", table_name=table)
    for table in ("checkpoint_threads", "checkpoint_writes", "checkpoint_blobs", "checkpoints"):
        op.drop_table(table)
