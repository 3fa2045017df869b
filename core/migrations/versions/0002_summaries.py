"""summaries and llm_usage

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "summaries",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("covers_through_seq", sa.BigInteger, nullable=False),
        sa.Column("from_seq", sa.BigInteger, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("folded_tokens", sa.Integer, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "session_id", "covers_through_seq", name="pk_summaries"),
    )
    op.create_table(
        "llm_usage",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("calls", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant", "day", "model", name="pk_llm_usage"),
    )


def downgrade() -> None:
    op.drop_table("llm_usage")
    op.drop_table("summaries")
