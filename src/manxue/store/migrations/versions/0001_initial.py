"""Initial schema: tenants, API keys, credits and the ledger.

Revision ID: 0001
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        Column("id", String(40), primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "api_keys",
        Column("id", String(40), primary_key=True),
        Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False),
        Column("name", String(200)),
        Column("prefix", String(20), nullable=False),
        Column("key_hash", String(64), nullable=False, unique=True),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("expires_at", DateTime(timezone=True)),
        Column("disabled", Boolean, nullable=False, default=False),
        Column("models", Text),  # comma-separated allow-list; NULL = all
        Column("rpm", Integer),
        Column("tpm", Integer),
        Column("max_concurrency", Integer),
        Column("privacy", String(20)),
        Column("price_list", String(100)),
        Column("currency", String(8), nullable=False),
        Column("prepaid", Boolean, nullable=False, default=False),
        Column("daily_budget_nano", BigInteger),
        Column("monthly_budget_nano", BigInteger),
    )

    op.create_table(
        "credits",
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("key_id", String(40), ForeignKey("api_keys.id"), nullable=False),
        Column("amount_nano", BigInteger, nullable=False),
        Column("currency", String(8), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("note", Text),
    )

    op.create_table(
        "ledger",
        Column("request_id", String(80), primary_key=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("tenant_id", String(40)),
        Column("key_id", String(40)),
        Column("model", String(200), nullable=False),
        Column("deployment", String(200)),
        Column("stream", Boolean, nullable=False),
        Column("status", String(20), nullable=False),
        Column("prompt_tokens", Integer, nullable=False),
        Column("cache_hit_tokens", Integer, nullable=False),
        Column("cache_miss_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("reasoning_tokens", Integer, nullable=False),
        Column("usage_source", String(20), nullable=False),  # upstream | counted
        Column("price_list", String(100)),
        Column("currency", String(8)),
        Column("price_hit", String(40)),  # per 1M tokens, exact decimal text
        Column("price_miss", String(40)),
        Column("price_output", String(40)),
        Column("cost_nano", BigInteger, nullable=False),
        Column("upstream_cost_nano", BigInteger, nullable=False),
        Column("latency_ms", Integer),
        Column("ttft_ms", Integer),
        Column("attempts", Integer),
        Column("error", Text),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_index("ix_api_keys_updated_at", "api_keys", ["updated_at"])
    op.create_index("ix_credits_key_id", "credits", ["key_id"])
    op.create_index("ix_ledger_at", "ledger", ["at"])
    op.create_index("ix_ledger_tenant_id", "ledger", ["tenant_id"])
    op.create_index("ix_ledger_key_id", "ledger", ["key_id"])
