"""GET /v1/plan?model=…&hardware=…&gpus=…: the planner's report, the JSON of `manxue plan --json`.

Query parameters: model, hardware (required); gpus (8), precision, context (8192),
gpu_hour (2.0), price_list, at, efficiency (calibrated; 1.0 = the roofline bound), engine,
user_speed (10), utilisation (1.0), overhead (0.10), kv_dtype (bf16), kv_bytes_per_token,
batch, input_per_output, hit_rate.
Only catalog models are accepted here (no file paths). Errors are raised as manxue errors
and rendered as OpenAI error JSON by the server middleware.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from aiohttp import web

from manxue.errors import InvalidParameters
from manxue.plan.calibrated import DEFAULT_USER_SPEED
from manxue.plan.catalog import builtin_catalog
from manxue.plan.report import (
    DEFAULT_HIT_RATE,
    DEFAULT_INPUT_PER_OUTPUT,
    PlanQuery,
    build_report,
    jsonable,
)
from manxue.plan.values import parse_money, parse_time

T = TypeVar("T")
_KNOWN = {"model", "hardware", "gpus", "precision", "context", "gpu_hour", "price_list", "at",
          "efficiency", "utilisation", "overhead", "kv_dtype", "kv_bytes_per_token", "batch",
          "input_per_output", "hit_rate", "engine", "user_speed"}


def _get(query: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise InvalidParameters(f"{name}={raw!r} is not a valid value", param=name) from None


def _required(query: Mapping[str, str], name: str) -> str:
    value = query.get(name, "").strip()
    if not value:
        raise InvalidParameters(f"query parameter {name} is required", param=name)
    return value


def query_from(query: Mapping[str, str]) -> PlanQuery:
    unknown = sorted(set(query) - _KNOWN)
    if unknown:
        raise InvalidParameters(f"unknown query parameter(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(_KNOWN))}", param=unknown[0])
    return PlanQuery(
        model=_required(query, "model"), hardware=_required(query, "hardware"),
        gpus=_get(query, "gpus", int, 8), precision=query.get("precision") or None,
        context=_get(query, "context", int, 8192),
        gpu_hour=parse_money(query.get("gpu_hour") or "2.0"),
        price_list=query.get("price_list") or None, at=parse_time(query.get("at")),
        efficiency=_get(query, "efficiency", float, None),
        engine=query.get("engine") or None,
        user_speed=_get(query, "user_speed", float, DEFAULT_USER_SPEED),
        utilisation=_get(query, "utilisation", float, 1.0),
        overhead=_get(query, "overhead", float, 0.10), kv_dtype=query.get("kv_dtype") or "bf16",
        kv_bytes_per_token=_get(query, "kv_bytes_per_token", int, None),
        batch=_get(query, "batch", int, None),
        input_per_output=_get(query, "input_per_output", float, DEFAULT_INPUT_PER_OUTPUT),
        hit_rate=_get(query, "hit_rate", float, DEFAULT_HIT_RATE))


def plan_report(query: Mapping[str, str]) -> dict[str, Any]:
    q = query_from(query)
    if q.gpus < 1 or q.gpus > 100_000:
        raise InvalidParameters("gpus must be between 1 and 100000", param="gpus")
    if q.context > 10_000_000:
        raise InvalidParameters("context must be at most 10,000,000 tokens", param="context")
    if not 0 <= q.user_speed <= 100_000:
        raise InvalidParameters("user_speed must be between 0 and 100000 tokens/s",
                                param="user_speed")
    if q.batch is not None and q.batch < 1:
        raise InvalidParameters("batch must be >= 1", param="batch")
    if q.gpu_hour > Decimal(1_000_000):
        raise InvalidParameters("gpu_hour is implausibly large", param="gpu_hour")
    return build_report(q, builtin_catalog(), allow_paths=False)


async def plan_handler(request: web.Request) -> web.Response:
    body = orjson.dumps(jsonable(plan_report(request.query)))
    return web.Response(body=body, content_type="application/json")
