"""The price book the meter reads: built-in lists plus the operator's own, looked up fast."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from manxue.accounting.money import Rates
from manxue.errors import ConfigError, InvalidParameters, ManxueError
from manxue.pricing.lists import PriceList, price_at
from manxue.protocol.usage import Usage
from manxue.settings import DeploymentSettings, Settings

_CACHE_LIMIT = 50_000
log = logging.getLogger("manxue.meter")


@dataclass(frozen=True, slots=True)
class Prices:
    """Unit prices per million tokens, and the list they came from (kept in the ledger row)."""

    list_id: str
    currency: str
    hit: Decimal
    miss: Decimal
    output: Decimal
    rates: Rates = field(init=False, repr=False, compare=False)
    texts: tuple[str, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once per price, so the request path neither multiplies nor formats Decimals
        object.__setattr__(self, "rates", Rates.of(self.hit, self.miss, self.output))
        object.__setattr__(self, "texts", (str(self.hit), str(self.miss), str(self.output)))


class PriceBook:
    def __init__(self, lists: dict[str, PriceList], deployments: list[DeploymentSettings]) -> None:
        self.lists = lists
        self.deployments = {d.name: d for d in deployments}
        # deployments whose upstream charges per token (the others' upstream cost is 0 here)
        self.per_token = {d.name for d in deployments if d.cost_price_list is not None}
        # (list id, model, minute) → the prices in force then; read inline by the meter
        self.cache: dict[tuple[str | None, str, float], Prices | None] = {}
        self._warned: set[tuple[str, str]] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> PriceBook:
        from manxue.pricing.catalog import configured_price_lists

        lists = configured_price_lists(settings.billing.price_lists)
        book = cls(lists, settings.deployments)
        ref = settings.billing.default_price_list
        if ref is not None and ref not in lists:
            raise ConfigError(f"unknown price list {ref!r}; `manxue prices` lists the ids")
        for d in settings.deployments:
            try:
                book.check_deployment(d)
            except InvalidParameters as exc:
                raise ConfigError(exc.message) from None
        return book

    def check_deployment(self, d: DeploymentSettings) -> None:
        """Raise InvalidParameters when `d`'s cost side names no known price list, or one that
        never prices its model (its upstream cost would be recorded as 0)."""
        ref = d.cost_price_list
        if ref is None:
            return
        pl = self.lists.get(ref)
        if pl is None:
            raise InvalidParameters(
                f"deployment {d.name!r}: unknown cost_price_list {ref!r}; `manxue prices` lists "
                "the ids", param="cost_price_list", code="invalid_deployment")
        names = {d.upstream_model or d.model, d.model}
        if not names & set(pl.models()):
            raise InvalidParameters(
                f"deployment {d.name!r}: cost_price_list {ref!r} has no price for "
                f"{' or '.join(sorted(names))}; it prices {', '.join(pl.models())} "
                f"(`manxue prices {ref}`)", param="cost_price_list", code="invalid_deployment")

    def add_deployment(self, d: DeploymentSettings) -> None:
        """Price the cost side of a deployment added while serving (or replaced); its cost
        side was checked (`check_deployment`) before the router took it."""
        self.deployments[d.name] = d
        self._warned = {k for k in self._warned if k[0] != d.name}  # a replaced one is new
        if d.cost_price_list is not None:
            self.per_token.add(d.name)
            self.warn_unpriced(d)
        else:
            self.per_token.discard(d.name)

    def warn_unpriced(self, d: DeploymentSettings, ts: float | None = None) -> bool:
        """Warn now, once, when `d`'s cost list has no price in force for its model at `ts`
        (default: now), rather than at its first request; return whether it has one.

        `check_deployment` refuses a list that never prices the model; this catches one whose
        prices for it ended (or have not begun): its upstream cost is recorded as 0."""
        if d.cost_price_list is None:
            return True
        ts = time.time() if ts is None else ts
        if self.lookup_at(d.cost_price_list, d.upstream_model or d.model, ts) is not None \
                or self.lookup_at(d.cost_price_list, d.model, ts) is not None:
            return True
        self._unpriced(d, d.model, ts)
        return False

    def _unpriced(self, dep: DeploymentSettings, model: str, ts: float) -> None:
        """Say once per deployment and model that its cost list had no price in force."""
        key = (dep.name, model)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning("deployment %r: cost_price_list %r has no price for %r in force at %s; "
                    "its upstream cost is recorded as 0 until it does (`manxue prices %s`)",
                    dep.name, dep.cost_price_list, dep.upstream_model or model,
                    datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds"),
                    dep.cost_price_list)

    def lookup(self, list_id: str | None, model: str, when: datetime) -> Prices | None:
        """Prices in force at `when` (minute resolution), or None when the list has none."""
        return self.lookup_at(list_id, model, when.timestamp())

    def lookup_at(self, list_id: str | None, model: str, ts: float) -> Prices | None:
        """`lookup` for a POSIX time: the price in force at the start of its minute."""
        if list_id is None:
            return None
        minute = int(ts) // 60
        key = (list_id, model, minute)
        try:
            return self.cache[key]
        except KeyError:
            pass
        found: Prices | None = None
        pl = self.lists.get(list_id)
        if pl is not None:
            try:
                u = price_at(pl, model, datetime.fromtimestamp(minute * 60, UTC))
                found = Prices(list_id, u.currency, u.hit, u.miss, u.output)
            except ManxueError:
                found = None
        if len(self.cache) > _CACHE_LIMIT:
            self.cache.clear()
        self.cache[key] = found
        return found

    def upstream_cost(self, deployment: str, model: str, usage: Usage | None, ts: float) -> int:
        """What the upstream charges for this usage at POSIX time `ts` (0 when its cost side
        is not per token)."""
        dep = self.deployments.get(deployment)
        if dep is None or dep.cost_price_list is None or usage is None:
            return 0
        prices = self.lookup_at(dep.cost_price_list, dep.upstream_model or model, ts) \
            or self.lookup_at(dep.cost_price_list, model, ts)
        if prices is None:
            self._unpriced(dep, model, ts)
            return 0
        return prices.rates.cost_nano(usage.cache_hit_tokens, usage.cache_miss_tokens,
                                      usage.completion_tokens)
