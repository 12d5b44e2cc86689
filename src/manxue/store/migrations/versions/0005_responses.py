"""Stored answers of the Responses API, so that `previous_response_id` can continue them.

Each row belongs to the key that made it (NULL: a gateway without keys) and is dropped after
`[responses] retention_hours`.

Revision ID: 0005
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import Column, DateTime, String, Text

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        Column("id", String(64), primary_key=True),
        Column("key_id", String(40), index=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
        Column("model", String(200), nullable=False),
        Column("body", Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("responses")
