"""The SQL schema, as SQLAlchemy Core tables. Change it only through a new migration.

Money is stored as integers of nano-units (1e-9 of the currency), so sums in SQL are exact.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

tenants = Table(
    "tenants", metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("price_list", String(100)),  # for its keys that name none; NULL: [billing] default
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", String(40), primary_key=True),
    Column("tenant_id", String(40), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("name", String(200)),
    Column("prefix", String(20), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
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

credits = Table(
    "credits", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(40), ForeignKey("api_keys.id"), nullable=False, index=True),
    Column("amount_nano", BigInteger, nullable=False),
    Column("currency", String(8), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("note", Text),
)

ledger = Table(
    "ledger", metadata,
    Column("request_id", String(80), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("tenant_id", String(40), index=True),
    Column("key_id", String(40), index=True),
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
    Column("client_request_id", String(200)),  # the client's X-Client-Request-Id / X-Request-Id
    # what the usage would have cost beyond the request's reservation, not charged (a prepaid
    # balance or a budget is never overdrawn): cost_nano + unbilled_nano is the list price
    Column("unbilled_nano", BigInteger, nullable=False, default=0, server_default="0"),
)

responses = Table(
    "responses", metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(40), index=True),  # NULL: stored by a gateway without keys
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("body", Text, nullable=False),  # JSON: {"messages": chat history, "response": {...}}
)

deployments = Table(
    "deployments", metadata,
    Column("name", String(200), primary_key=True),
    Column("settings", Text, nullable=False),  # JSON: the deployment as the admin API took it
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
