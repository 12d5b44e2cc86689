"""The meter: authenticate, admit (limits and reservations), settle every request exactly once.

Nothing here waits for SQL on the request path: keys are cached in memory (reloaded in the
background), admission state lives in `Counters` (memory or Redis), ledger rows go to the
journal and reach SQL in batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from manxue.accounting.counters import Counters, Limits, Refusal
from manxue.accounting.keys import KeyRecord, KeyStore
from manxue.accounting.ledger import LedgerWriter
from manxue.accounting.money import cost_nano
from manxue.accounting.prices import PriceBook, Prices
from manxue.accounting.tokencount import count_prompt, count_text, family_for_model
from manxue.errors import (
    AuthenticationFailed,
    InsufficientBalance,
    PermissionDenied,
    RateLimited,
)
from manxue.gateway.service import Outcome
from manxue.protocol.chat import ChatRequest
from manxue.protocol.usage import Usage
from manxue.settings import Settings

log = logging.getLogger("manxue.meter")


@dataclass(slots=True)
class Ticket:
    """What admission decided, carried to settlement."""

    key: KeyRecord | None
    limits: Limits
    reserve_nano: int
    prices: Prices | None
    raw: dict[str, Any]
    at: datetime


class KeyCache:
    """Keys by hash, reloaded from SQL in the background so the hot path never queries."""

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.by_hash: dict[str, KeyRecord] = {}
        self.by_id: dict[str, KeyRecord] = {}

    def load(self) -> None:
        records = self.store.all()
        self.by_hash = {r.key_hash: r for r in records}
        self.by_id = {r.id: r for r in records}

    async def refresh_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.load)
            except Exception:
                log.exception("reloading API keys failed; serving the previous set")


def _is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


_REFUSALS = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrency": "concurrent requests",
    "daily_budget": "daily budget",
    "monthly_budget": "monthly budget",
}


class Meter:
    def __init__(self, settings: Settings, store: KeyStore, counters: Counters,
                 writer: LedgerWriter, prices: PriceBook) -> None:
        self.settings = settings
        self.store = store
        self.keys = KeyCache(store)
        self.counters = counters
        self.writer = writer
        self.prices = prices
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: set[asyncio.Task[None]] = set()
        self._limit_cache: dict[str, tuple[KeyRecord, Limits]] = {}

    # ---- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.writer.replay)
        await asyncio.to_thread(self.keys.load)
        now = datetime.now(UTC)
        total, day, month = await asyncio.to_thread(self._spent_now, now)
        await self.counters.load_spent(total, day, month)
        self._tasks = [
            asyncio.create_task(self.writer.run()),
            asyncio.create_task(self.keys.refresh_forever(self.settings.billing.key_refresh_interval)),
        ]

    def _spent_now(self, now: datetime) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return (self.store.spent(), self.store.spent_since(day_start),
                self.store.spent_since(day_start.replace(day=1)))

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)
        await self.writer.close()
        await self.counters.close()

    @property
    def open_mode(self) -> bool:
        """No key exists: only loopback clients are served, without a key."""
        return not self.keys.by_hash

    # ---- request path -------------------------------------------------------------------------
    def authenticate(self, authorization: str | None, api_key: str | None,
                     remote: str | None) -> KeyRecord | None:
        token = api_key or ""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            token = value.strip() if scheme.lower() == "bearer" else ""
        if self.open_mode:
            if _is_loopback(remote):
                return None
            raise AuthenticationFailed(
                "this gateway has no API keys yet and only answers clients on this machine; "
                "create one with `manxue keys create --tenant NAME`")
        if not token:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer sk-...'", code="missing_api_key")
        rec = self.keys.by_hash.get(hashlib.sha256(token.encode()).hexdigest())
        if rec is None:
            raise AuthenticationFailed("invalid API key")
        if rec.disabled:
            raise AuthenticationFailed("this API key is disabled; ask your provider to enable it",
                                       code="api_key_disabled")
        if rec.expires_at is not None and rec.expires_at <= datetime.now(UTC):
            raise AuthenticationFailed("this API key has expired", code="api_key_expired")
        return rec

    def allowed_models(self, key: KeyRecord | None, models: list[str]) -> list[str]:
        if key is None or key.models is None:
            return models
        return [m for m in models if m in key.models]

    async def admit(self, key: KeyRecord | None, req: ChatRequest, raw: dict[str, Any],
                    request_id: str, body_bytes: int) -> Ticket:
        now = datetime.now(UTC)
        if key is None:
            return Ticket(None, Limits(), 0, self._prices(None, req.model, now), raw, now)
        if key.models is not None and req.model not in key.models:
            raise PermissionDenied(f"this API key may not use model '{req.model}'",
                                   code="model_not_allowed", param="model")
        prices = self._prices(key, req.model, now)
        if key.prepaid and prices is None:
            raise PermissionDenied(
                f"model '{req.model}' has no price for this key's price list; ask your provider",
                code="model_not_priced", param="model")
        limits = self._limits(key)
        reserve = self._worst_case(req, body_bytes, prices) if prices is not None else 0
        refusal = await self.counters.admit(key.id, request_id, reserve, limits,
                                            ttl=self._reservation_ttl())
        if refusal is not None:
            raise self._refused(refusal, key)
        return Ticket(key, limits, reserve, prices, raw, now)

    def _reservation_ttl(self) -> float:
        longest = max((d.timeouts.total for d in self.settings.deployments), default=600.0)
        return longest + 60.0

    def _prices(self, key: KeyRecord | None, model: str, when: datetime) -> Prices | None:
        list_id = (key.price_list if key else None) or self.settings.billing.default_price_list
        return self.prices.lookup(list_id, model, when)

    def _limits(self, key: KeyRecord) -> Limits:
        cached = self._limit_cache.get(key.id)
        if cached is not None and cached[0] is key:
            return cached[1]
        limits = Limits(rpm=key.rpm, tpm=key.tpm, max_concurrency=key.max_concurrency,
                        credits_nano=key.credits_nano if key.prepaid else None,
                        daily_budget_nano=key.daily_budget_nano,
                        monthly_budget_nano=key.monthly_budget_nano)
        self._limit_cache[key.id] = (key, limits)
        return limits

    def _worst_case(self, req: ChatRequest, body_bytes: int, prices: Prices) -> int:
        """The most this request can cost: a BPE token is at least one byte of the request
        body, so the body's size bounds the prompt (the chat template's own tokens aside)."""
        prompt_bound = body_bytes
        ms = self.settings.model_settings(req.model)
        out = req.max_completion_tokens or req.max_tokens or ms.max_output_tokens
        out += ms.reasoning_budget
        return cost_nano(0, prompt_bound, out, prices.hit, prices.miss, prices.output)

    def _refused(self, r: Refusal, key: KeyRecord) -> Exception:
        if r.reason == "balance":
            return InsufficientBalance(
                "insufficient balance for this request (its largest possible cost is reserved "
                "up front); top up the key or lower max_tokens")
        what = _REFUSALS.get(r.reason, r.reason)
        code = "budget_exceeded" if r.reason.endswith("budget") else "rate_limit_exceeded"
        wait = r.retry_after or 1.0
        return RateLimited(f"limit reached: {what} for this key; retry in {max(1, round(wait))} s",
                           code=code, retry_after=wait)

    # ---- settlement (UsageSink) ---------------------------------------------------------------
    def record(self, outcome: Outcome) -> None:
        ticket = outcome.ctx.ticket
        if not isinstance(ticket, Ticket):
            return
        usage, source = self._usage(outcome, ticket)
        prices = ticket.prices
        cost = 0
        if prices is not None and usage is not None:
            cost = cost_nano(usage.cache_hit_tokens, usage.cache_miss_tokens,
                             usage.completion_tokens, prices.hit, prices.miss, prices.output)
        upstream = self.prices.upstream_cost(outcome.deployment, outcome.ctx.model, usage, ticket.at)
        u = usage or Usage()
        key = ticket.key
        row = {
            "request_id": outcome.ctx.request_id,
            "at": ticket.at.isoformat(),
            "tenant_id": key.tenant_id if key else None,
            "key_id": key.id if key else None,
            "model": outcome.ctx.model,
            "deployment": outcome.deployment or None,
            "stream": outcome.ctx.stream,
            "status": "ok" if outcome.completed else ("error" if usage is None else "incomplete"),
            "prompt_tokens": u.prompt_tokens,
            "cache_hit_tokens": u.cache_hit_tokens,
            "cache_miss_tokens": u.cache_miss_tokens,
            "completion_tokens": u.completion_tokens,
            "reasoning_tokens": u.reasoning_tokens,
            "usage_source": source,
            "price_list": prices.list_id if prices else None,
            "currency": prices.currency if prices else None,
            "price_hit": str(prices.hit) if prices else None,
            "price_miss": str(prices.miss) if prices else None,
            "price_output": str(prices.output) if prices else None,
            "cost_nano": cost,
            "upstream_cost_nano": upstream,
            "latency_ms": round(outcome.seconds * 1000),
            "ttft_ms": round(outcome.ttft * 1000) if outcome.ttft is not None else None,
            "attempts": outcome.attempts,
            "error": outcome.extra.get("error"),
        }
        self.writer.write(row)
        if key is None:
            return
        tokens = u.prompt_tokens + u.completion_tokens
        settle_now = getattr(self.counters, "settle_now", None)
        if settle_now is not None:
            settle_now(key.id, outcome.ctx.request_id, cost, tokens, ticket.limits)
            return
        task = asyncio.get_running_loop().create_task(self.counters.settle(
            key.id, outcome.ctx.request_id, cost, tokens, ticket.limits))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _usage(self, outcome: Outcome, ticket: Ticket) -> tuple[Usage | None, str]:
        if outcome.usage is not None:
            return outcome.usage, "upstream"
        if not outcome.deployment:  # never reached an upstream: nothing to bill
            return None, "none"
        family = self.settings.model_settings(outcome.ctx.model).tokenizer \
            or family_for_model(outcome.ctx.model)
        prompt = count_prompt(ticket.raw.get("messages") or [], family)
        answer, reasoning = outcome.text()
        completion = count_text(answer, family)
        thought = count_text(reasoning, family)
        return Usage(prompt, completion + thought, 0, prompt, thought), "counted"

