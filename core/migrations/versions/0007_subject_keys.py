"""subject_keys and key_epochs: per-subject data keys for crypto-shredding (core/crypto)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Created here even when MEMSCRIBE_KEYSTORE_URL names another database (then it stays
    # empty): the schema of a database never depends on settings. `memscribe migrate` creates
    # the table in the separate key store as well (core/crypto/keystore.py: ensure_schema).
    op.create_table(
        "subject_keys",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("subject_ref", sa.String(64), nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=True),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_subject_keys"),
    )
    op.create_index(
        "uq_subject_keys_live",
        "subject_keys",
        ["tenant", "subject_ref"],
        unique=True,
        postgresql_where=sa.text("destroyed_at IS NULL"),
        sqlite_where=sa.text("destroyed_at IS NULL"),
    )
    # Bumped with every destruction of a tenant's keys: what writers' key caches check.
    op.create_table(
        "key_epochs",
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("tenant", name="pk_key_epochs"),
    )


def downgrade() -> None:
    op.drop_table("key_epochs")
    op.drop_index("uq_subject_keys_live", table_name="subject_keys")
    op.drop_table("subject_keys")
