"""long-term memories and their lineage

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "memories",
        sa.Column("memory_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("pinned", sa.Boolean, nullable=False, server_default="0"),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("embedding", sa.JSON, nullable=True),
        sa.Column("embedding_model", sa.String(128), nullable=True),
        sa.Column("access_count", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("last_accessed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_by", sa.String(128), nullable=True),
        sa.Column("examined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provenance", sa.JSON, nullable=True),
        sa.Column("ttl_s", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("memory_id", name="pk_memories"),
    )
    op.create_index("ix_memories_subject", "memories", ["tenant", "subject_id"])
    op.create_table(
        "memory_lineage",
        sa.Column("merged_id", sa.String(128), nullable=False),
        sa.Column("source_id", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("method", sa.String(160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("merged_id", "source_id", name="pk_memory_lineage"),
    )
    op.create_index("ix_memory_lineage_source", "memory_lineage", ["source_id"])


def downgrade() -> None:
    op.drop_index("ix_memory_lineage_source", table_name="memory_lineage")
    op.drop_table("memory_lineage")
    op.drop_index("ix_memories_subject", table_name="memories")
    op.drop_table("memories")
