"""The ledger records usage left uncharged because it went past the request's reservation.

A prepaid balance (or a budget) is never overdrawn: when an upstream reports more usage than
admission reserved for (more prompt tokens than the body could hold, more output than
max_tokens), the customer is charged the reservation and the rest is kept here.

Revision ID: 0004
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import BigInteger, Column

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.add_column(Column("unbilled_nano", BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("unbilled_nano")
