"""conversation state versions, state history, agent results

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "sessions",
        sa.Column("state_version", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "state_history",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("prev_version", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=True),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("changes", sa.JSON, nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "session_id", "version", name="pk_state_history"),
    )
    op.create_table(
        "agent_results",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=False),
        sa.Column("result_id", sa.String(128), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "session_id", "result_id", name="pk_agent_results"),
    )
    op.create_index(
        "ix_agent_results_position", "agent_results", ["tenant", "session_id", "position"]
    )


def downgrade() -> None:
    op.drop_index("ix_agent_results_position", table_name="agent_results")
    op.drop_table("agent_results")
    op.drop_table("state_history")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("state_version")
