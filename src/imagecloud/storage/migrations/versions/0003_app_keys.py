"""App keys: search-only keys an owner hands to apps and web pages instead of the secret key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("channels", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("user_id", "name", name="uq_app_keys_user_name"),
    )
    op.create_index("ix_app_keys_user_hash", "app_keys", ["user_id", "key_hash"])


def downgrade() -> None:
    op.drop_index("ix_app_keys_user_hash", table_name="app_keys")
    op.drop_table("app_keys")
