"""The meter: authenticate, admit (limits and reservations), settle every request exactly once.

Nothing here waits for SQL on the request path: keys are cached in memory (reloaded in the
background), admission state lives in `Counters` (memory or Redis), ledger rows go to the
journal and reach SQL in batches.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from manxue.accounting.counters import Counters, Limits, Refusal
from manxue.accounting.journal import ledger_unavailable
from manxue.accounting.keys import KeyRecord, KeyStore
from manxue.accounting.ledger import LedgerWriter, ledger_time
from manxue.accounting.money import NANO
from manxue.accounting.money import text as money_text
from manxue.accounting.prices import PriceBook, Prices
from manxue.accounting.tokencount import count_prompt, count_text, family_for_model
from manxue.errors import (
    AuthenticationFailed,
    InsufficientBalance,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
)
from manxue.metrics import Metrics
from manxue.protocol.chat import answer_text
from manxue.protocol.completions import prompt_texts
from manxue.protocol.types import ApiRequest, Outcome
from manxue.protocol.usage import Usage
from manxue.settings import DeploymentSettings, Settings

_PING_TIMEOUT = 2.0  # seconds /ready waits for the database or Redis
_PING_EVERY = 1.0  # seconds a /ready answer about them is reused

log = logging.getLogger("manxue.meter")

_NO_LIMITS = Limits()
_TOKEN_CACHE = 10_000
_UNSEEN: Any = object()
_NO_USAGE = Usage()
_NO_PRICES: tuple[None, None, None] = (None, None, None)


@dataclass(slots=True)
class Ticket:
    """What admission decided, carried to settlement."""

    key: KeyRecord | None
    limits: Limits
    reserve_nano: int
    prices: Prices | None
    raw: dict[str, Any]
    at: float  # POSIX time of admission: the price in force then is the one charged

    @property
    def capped(self) -> bool:
        """The charge may not pass the reservation (a balance or a budget bounds it)."""
        lim = self.limits
        return lim.credits_nano is not None or lim.daily_budget_nano is not None \
            or lim.monthly_budget_nano is not None


class KeyCache:
    """Keys by hash, kept current from SQL in the background so the hot path never queries.

    A refresh reads only the keys changed since the one before (every change to a key moves
    its `updated_at`, and keys are never deleted), looking back `OVERLAP` more so that a change
    committed a little after the time it carries, or stamped by a host whose clock runs a
    little behind, is still seen; every `FULL_EVERY`-th refresh reads all keys. Changes
    replace the dicts whole, so the hot path never sees one half-applied, and unchanged
    records keep their identity (the meter's per-key plans stay cached).
    """

    OVERLAP = timedelta(seconds=60)
    FULL_EVERY = 30

    def __init__(self, store: KeyStore) -> None:
        self.store = store
        self.by_hash: dict[str, KeyRecord] = {}
        self.by_id: dict[str, KeyRecord] = {}
        self._since: datetime | None = None  # when the last refresh began
        self._refreshes = 0

    def load(self) -> None:
        """Read every key."""
        started = datetime.now(UTC)
        records = self.store.all()
        self.by_hash = {r.key_hash: r for r in records}
        self.by_id = {r.id: r for r in records}
        self._since = started

    def refresh(self) -> int:
        """Apply what changed since the last refresh (every key now and then); return how many
        records were read."""
        self._refreshes += 1
        if self._since is None or self._refreshes % self.FULL_EVERY == 0:
            self.load()
            return len(self.by_id)
        started = datetime.now(UTC)
        changed = self.store.changed_since(self._since - self.OVERLAP)
        fresh = [r for r in changed if self.by_id.get(r.id) != r]
        if fresh:
            by_id = dict(self.by_id)
            by_hash = dict(self.by_hash)
            for r in fresh:
                old = by_id.get(r.id)
                if old is not None:
                    by_hash.pop(old.key_hash, None)
                by_id[r.id] = r
                by_hash[r.key_hash] = r
            self.by_id, self.by_hash = by_id, by_hash
        self._since = started
        return len(changed)

    async def refresh_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("reloading API keys failed; serving the previous set")




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
        self.metrics: Metrics | None = None  # set by the server: the unbilled-usage counter
        self._tasks: list[asyncio.Task[None]] = []
        self._settling: set[asyncio.Task[None]] = set()
        self._default_list = settings.billing.default_price_list
        # token → the key it named, valid while `keys.by_hash` is the dict it was found in: a
        # reload that changes any key replaces that dict, and this cache starts again
        self._tokens: dict[str, KeyRecord] = {}
        self._tokens_of: dict[str, KeyRecord] | None = None
        self._price_cache = prices.cache
        self._write = writer.write
        self._per_token = prices.per_token
        self._output_bounds: dict[str, tuple[int, int]] = {}
        self._reach: tuple[float, str | None] = (-_PING_EVERY, None)  # (when, what /ready said)
        # a reservation outlives the longest request a deployment allows, then lapses
        self._ttl = max((d.timeouts.total for d in settings.deployments), default=600.0) + 60.0
        # counters that never wait (in memory) are called directly, not awaited
        self._admit_now: Callable[[str, str, int, Limits, float], Refusal | None] | None = \
            getattr(counters, "admit_now", None)
        self._settle_now: Callable[[str, str, int, int, Limits], None] | None = \
            getattr(counters, "settle_now", None)

    # ---- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self.writer.replay)
        await self.writer.open_segment()  # a journal that cannot be written shows now, not at a request
        await asyncio.to_thread(self.keys.load)
        for rec, list_id, currency in self.store.mismatched(self.keys.by_id.values()):
            log.warning("key %s (tenant %s) is billed in %s but priced by %r, a list in %s: its "
                        "requests are refused (403 currency_mismatch) until `manxue keys set KEY "
                        "--price-list ID` gives it a list in its currency, or `--currency` (for a "
                        "key without credits) changes it", rec.id, rec.tenant, rec.currency,
                        list_id, currency)
        for d in self.settings.deployments:  # said now, not at the deployment's first request
            self.prices.warn_unpriced(d)
        now = datetime.now(UTC)
        total, day, month = await asyncio.to_thread(self._spent_now, now)
        await self.counters.load_spent(total, day, month)
        self._tasks = [
            asyncio.create_task(self.writer.run()),
            asyncio.create_task(self.keys.refresh_forever(self.settings.billing.key_refresh_interval)),
        ]

    async def unreachable(self) -> str | None:
        """What of the shared state cannot be reached now (the database, Redis), or None:
        `/ready` says so, so that a load balancer sends requests elsewhere. Asked at most once
        a second, however often /ready is called."""
        now = time.monotonic()
        if now - self._reach[0] < _PING_EVERY:
            return self._reach[1]
        found = await self._ping()
        self._reach = (time.monotonic(), found)
        return found

    async def _ping(self) -> str | None:
        def ping_sql() -> None:
            with self.store.engine.connect() as c:
                c.execute(text("SELECT 1"))

        try:
            await asyncio.wait_for(asyncio.to_thread(ping_sql), _PING_TIMEOUT)
        except Exception as exc:  # any failure to answer is "unreachable", with its reason
            return f"the database is unreachable ({type(exc).__name__})"
        redis = getattr(self.counters, "redis", None)
        if redis is not None:
            try:
                await asyncio.wait_for(redis.ping(), _PING_TIMEOUT)
            except Exception as exc:
                return f"Redis is unreachable ({type(exc).__name__})"
        return None

    def check_deployment(self, d: DeploymentSettings) -> None:
        """Raise InvalidParameters when `d` cannot be metered (its cost list is unknown, or
        never prices its model)."""
        self.prices.check_deployment(d)

    def add_deployment(self, d: DeploymentSettings) -> None:
        """Meter a deployment added while serving: its upstream cost, and reservations that
        outlive its longest request."""
        self.prices.add_deployment(d)
        self._ttl = max(self._ttl, d.timeouts.total + 60.0)

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
                     local: bool | Callable[[], bool]) -> KeyRecord | None:
        """The key a request carries. `local` (whether the client is on this machine, or a
        function saying it: the server knows its proxies) only matters while no key exists."""
        token = api_key or ""
        if authorization:
            if authorization.startswith("Bearer "):  # the usual form, without the general parse
                token = authorization[7:].strip()
            else:
                scheme, _, value = authorization.partition(" ")
                token = value.strip() if scheme.lower() == "bearer" else ""
        keys = self.keys.by_hash
        if self._tokens_of is not keys:
            self._tokens = {}
            self._tokens_of = keys
        rec = self._tokens.get(token)
        if rec is None:
            rec = self._find(token, keys, local)
            if rec is None:
                return None
        if rec.disabled:
            raise AuthenticationFailed("this API key is disabled; ask your provider to enable it",
                                       code="api_key_disabled")
        if rec.expires_at is not None and rec.expires_at <= datetime.now(UTC):
            raise AuthenticationFailed("this API key has expired", code="api_key_expired")
        return rec

    def _find(self, token: str, keys: dict[str, KeyRecord],
              local: bool | Callable[[], bool]) -> KeyRecord | None:
        """`authenticate` for a token not seen since the last change to the keys."""
        if not keys:  # no key exists yet: loopback clients only
            if local() if callable(local) else local:
                return None
            raise AuthenticationFailed(
                "this gateway has no API keys yet and only answers clients on this machine; "
                "create one with `manxue keys create --tenant NAME`")
        if not token:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer sk-...'", code="missing_api_key")
        rec = keys.get(hashlib.sha256(token.encode()).hexdigest())
        if rec is None:
            raise AuthenticationFailed("invalid API key")
        if len(self._tokens) < _TOKEN_CACHE:  # only tokens that name a key are kept
            self._tokens[token] = rec
        return rec

    def allowed_models(self, key: KeyRecord | None, models: list[str]) -> list[str]:
        if key is None or key.models is None:
            return models
        return [m for m in models if m in key.models]

    async def admit(self, key: KeyRecord | None, req: ApiRequest, raw: dict[str, Any],
                    request_id: str, body_bytes: int) -> Ticket:
        """Check the key's limits and reserve the request's largest possible cost; raise the
        403 / 402 / 429 a refusal calls for. Counters in memory answer at once (nothing is
        awaited); Redis is asked."""
        ticket = self._ticket(key, req, raw, body_bytes)
        if key is not None:
            check = self._admit_now
            refusal = check(key.id, request_id, ticket.reserve_nano, ticket.limits, self._ttl) \
                if check is not None else await self.counters.admit(
                    key.id, request_id, ticket.reserve_nano, ticket.limits, ttl=self._ttl)
            if refusal is not None:
                raise self._refused(refusal, key)
        return ticket

    def _ticket(self, key: KeyRecord | None, req: ApiRequest, raw: dict[str, Any],
                body_bytes: int) -> Ticket:
        """What admission needs to decide: the key's limits, the prices, the sum to reserve."""
        if self.writer.journal.failed is not None:  # it could not be recorded: do not ask for it
            raise ledger_unavailable()
        now = time.time()
        model = req.model
        if key is None:
            return Ticket(None, _NO_LIMITS, 0, self.prices.lookup_at(self._default_list, model, now),
                          raw, now)
        if key.models is not None and model not in key.models:
            raise PermissionDenied(f"this API key may not use model '{model}'",
                                   code="model_not_allowed", param="model")
        list_id = key.price_list or key.tenant_price_list or self._default_list
        # `self.prices.lookup_at(list_id, model, now)`, its cache read inline (`now // 60` is
        # the float of the minute its key holds as an int, and equal to it as a dict key)
        prices = self._price_cache.get((list_id, model, now // 60), _UNSEEN)
        if prices is _UNSEEN:
            prices = self.prices.lookup_at(list_id, model, now)
        if prices is None:
            # A key with no list at all (its own, its tenant's, the default) is metered in
            # tokens only; one with a list is never served a model the list does not price.
            if key.prepaid or list_id is not None:
                raise PermissionDenied(
                    f"model '{model}' has no price for this key's price list; ask your provider",
                    code="model_not_priced", param="model")
            reserve = 0
        elif prices.currency != key.currency:  # the list changed under the key, or the tenant's
            raise PermissionDenied(
                f"this API key is billed in {key.currency}, but its price list '{list_id}' is in "
                f"{prices.currency}; ask your provider", code="currency_mismatch", param="model")
        else:
            # The most this request can cost: a BPE token is at least one byte of the request
            # body, so the body's size bounds the prompt (the chat template's own tokens aside).
            out = req.max_completion_tokens or req.max_tokens
            if out != 0:  # 0: nothing is generated (embeddings, a scored prompt)
                extra = self._output_bounds.get(model)
                if extra is None:
                    extra = self._output_bound(model)
                # every choice (`n`) is an answer of its own, each as long as the largest one
                out = ((out or extra[0]) + extra[1]) * req.choices
            reserve = prices.rates.ceil_nano(body_bytes, out)
        return Ticket(key, key.limits, reserve, prices, raw, now)

    def _output_bound(self, model: str) -> tuple[int, int]:
        """Output tokens reserved for `model`: (when max_tokens is unset, reasoning on top)."""
        ms = self.settings.model_settings(model)
        bound = (ms.max_output_tokens, ms.reasoning_budget)
        self._output_bounds[model] = bound
        return bound

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
        ctx = outcome.ctx
        ticket = ctx.ticket
        if not isinstance(ticket, Ticket):
            return
        usage = outcome.usage
        source = "upstream"
        if usage is None:
            usage, source = self._usage(outcome, ticket)
        prices = ticket.prices
        u = usage or _NO_USAGE
        cost = 0
        if prices is not None and usage is not None:
            cost = prices.rates.cost_nano(u.cache_hit_tokens, u.cache_miss_tokens, u.completion_tokens)
        upstream = self.prices.upstream_cost(outcome.deployment, ctx.model, usage, ticket.at) \
            if outcome.deployment in self._per_token else 0
        key = ticket.key
        unbilled = 0
        if cost > ticket.reserve_nano and ticket.capped:
            # The upstream reported more than admission reserved for: charge what was reserved
            # (it fit the balance and budgets), keep the rest on the row, never overdraw.
            unbilled = cost - ticket.reserve_nano
            cost = ticket.reserve_nano
            self._unbilled(ctx.request_id, prices, unbilled)
        texts = prices.texts if prices is not None else _NO_PRICES
        try:
            self._write((  # in LEDGER_COLUMNS order
                ctx.request_id,                                           # request_id
                ledger_time(ticket.at),                                   # at
                key.tenant_id if key else None,                           # tenant_id
                key.id if key else None,                                  # key_id
                ctx.model,                                                # model
                outcome.deployment or None,                               # deployment
                1 if ctx.stream else 0,                                   # stream (binds as is)
                "ok" if outcome.completed else ("error" if usage is None else "incomplete"),  # status
                u.prompt_tokens,                                          # prompt_tokens
                u.cache_hit_tokens,                                       # cache_hit_tokens
                u.cache_miss_tokens,                                      # cache_miss_tokens
                u.completion_tokens,                                      # completion_tokens
                u.reasoning_tokens,                                       # reasoning_tokens
                source,                                                   # usage_source
                prices.list_id if prices else None,                       # price_list
                prices.currency if prices else None,                      # currency
                texts[0],                                                 # price_hit
                texts[1],                                                 # price_miss
                texts[2],                                                 # price_output
                cost,                                                     # cost_nano
                upstream,                                                 # upstream_cost_nano
                round(outcome.seconds * 1000),                            # latency_ms
                round(outcome.ttft * 1000) if outcome.ttft is not None else None,  # ttft_ms
                outcome.attempts,                                         # attempts
                outcome.extra.get("error"),                               # error
                ctx.client_request_id,                                    # client_request_id
                unbilled,                                                 # unbilled_nano
            ))
        except ServiceUnavailable:  # not recorded, so not charged: the reservation goes back
            cost = 0
            raise
        finally:
            if key is not None:
                tokens = u.prompt_tokens + u.completion_tokens
                if self._settle_now is not None:
                    self._settle_now(key.id, ctx.request_id, cost, tokens, ticket.limits)
                else:
                    task = asyncio.get_running_loop().create_task(self.counters.settle(
                        key.id, ctx.request_id, cost, tokens, ticket.limits))
                    self._settling.add(task)
                    task.add_done_callback(self._settling.discard)

    def _unbilled(self, request_id: str, prices: Prices | None, nano: int) -> None:
        currency = prices.currency if prices is not None else ""
        log.warning("request %s: usage reported beyond its reservation; %s %s left unbilled",
                    request_id, money_text(nano), currency)
        if self.metrics is not None:
            self.metrics.child(self.metrics.unbilled, currency).inc(nano / NANO)

    def _usage(self, outcome: Outcome, ticket: Ticket) -> tuple[Usage | None, str]:
        """Usage for an answer whose upstream reported none: counted, or none at all."""
        if not outcome.deployment:  # never reached an upstream: nothing to bill
            return None, "none"
        family = self.settings.model_settings(outcome.ctx.model).tokenizer \
            or family_for_model(outcome.ctx.model)
        raw = ticket.raw
        prompt = count_prompt(raw["messages"], family) if "messages" in raw else \
            sum(count_text(t, family) for t in prompt_texts(raw))
        answer, reasoning = answer_text(outcome.body, outcome.payloads)
        completion = count_text(answer, family)
        thought = count_text(reasoning, family)
        return Usage(prompt, completion + thought, 0, prompt, thought), "counted"

