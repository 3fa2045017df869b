"""per-session memory settings in the durable store

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # configure_session's overrides ({"trigger": "500", ...}, the fields of the Redis config
    # hash), so they survive Redis forgetting the session.
    op.add_column("sessions", sa.Column("settings", sa.JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("settings")
