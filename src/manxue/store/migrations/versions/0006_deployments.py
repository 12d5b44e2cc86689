"""Deployments added while serving (admin API, `manxue engine launch`), shared by every worker
and replica of a gateway that uses the same database.

Revision ID: 0006
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, DateTime, String, Text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        Column("name", String(200), primary_key=True),
        Column("settings", Text, nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("deployments")
