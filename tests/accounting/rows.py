"""Ledger rows written straight to SQL, for tests of reports and filters."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def ledger_row(request_id: str, at: datetime, tenant_id: str, key_id: str, **over: Any) -> dict[str, Any]:
    """A complete row: 10 prompt tokens (4 cache hits), 3 out, costing 0.000025 (upstream
    0.000005); `over` replaces any field."""
    return {"request_id": request_id, "at": at.isoformat(), "tenant_id": tenant_id, "key_id": key_id,
            "model": "m", "deployment": "d", "stream": False, "status": "ok", "prompt_tokens": 10,
            "cache_hit_tokens": 4, "cache_miss_tokens": 6, "completion_tokens": 3,
            "reasoning_tokens": 0, "usage_source": "upstream", "price_list": "x", "currency": "USD",
            "price_hit": "1", "price_miss": "2", "price_output": "3", "cost_nano": 25_000,
            "upstream_cost_nano": 5_000, "latency_ms": 3, "ttft_ms": 1, "attempts": 1, "error": None,
            **over}
