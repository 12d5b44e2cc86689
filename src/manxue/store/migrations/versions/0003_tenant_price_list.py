"""A tenant can have its own price list, used by its keys that name none of their own.

Revision ID: 0003
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, String

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(Column("price_list", String(100)))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("price_list")
