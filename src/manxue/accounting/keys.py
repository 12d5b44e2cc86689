"""Tenants and API keys in SQL. A key is shown once, at creation; only its hash is stored."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from manxue.accounting.counters import Limits
from manxue.accounting.money import text as money_text
from manxue.accounting.money import to_nano
from manxue.errors import InvalidParameters, KeyNotFound
from manxue.pricing.lists import CURRENCY_CODE
from manxue.store.tables import api_keys, credits, ledger, tenants
from manxue.timeutil import assume_utc

KEY_PREFIX = "sk-mx-"
_SHOWN_PREFIX_LEN = 12
# The most one key may hold, and be given at once: 1e18 nano-units, well inside a signed 64-bit
# SQL integer.
MAX_AMOUNT = Decimal(1_000_000_000)
_MAX_CREDITS_NANO = 9 * 10**18  # all top-ups of one key together, inside a signed 64-bit sum
_NAME_LEN = 200


def hash_key(plaintext: str) -> str:
    """Keys carry 256 random bits, so one SHA-256 is enough to store them safely."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def new_secret() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _now() -> datetime:
    return datetime.now(UTC)


def _id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key as the hot path and the admin tools see it (never the secret)."""

    id: str
    tenant_id: str
    tenant: str
    name: str | None
    prefix: str
    key_hash: str
    created_at: datetime
    expires_at: datetime | None
    disabled: bool
    models: frozenset[str] | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    privacy: str | None
    price_list: str | None
    currency: str
    prepaid: bool
    daily_budget_nano: int | None
    monthly_budget_nano: int | None
    credits_nano: int = 0
    tenant_price_list: str | None = None  # the tenant's list, for a key that names none
    # what admission checks, built once per record (a changed key is a new record)
    limits: Limits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "limits", Limits(
            rpm=self.rpm, tpm=self.tpm, max_concurrency=self.max_concurrency,
            credits_nano=self.credits_nano if self.prepaid else None,
            daily_budget_nano=self.daily_budget_nano, monthly_budget_nano=self.monthly_budget_nano))

    def status(self, now: datetime | None = None) -> str:
        """'disabled', 'expired' (its expires_at has passed) or 'active': whether a request
        with this key is served, as `Meter.authenticate` decides it."""
        if self.disabled:
            return "disabled"
        if self.expires_at is not None and self.expires_at <= (now or _now()):
            return "expired"
        return "active"

    def public(self, spent_nano: int | None = None) -> dict[str, Any]:
        d = asdict(self)
        d.pop("key_hash")
        d.pop("limits")
        d["status"] = self.status()
        d["models"] = sorted(self.models) if self.models is not None else None
        for k in ("created_at", "expires_at"):
            d[k] = d[k].isoformat() if d[k] else None
        for k in ("daily_budget_nano", "monthly_budget_nano", "credits_nano"):
            v = d.pop(k)
            d[k.removesuffix("_nano")] = money_text(v) if v is not None else None
        if spent_nano is not None:
            d["spent"] = money_text(spent_nano)
            d["balance"] = money_text(self.credits_nano - spent_nano) if self.prepaid else None
        return d


SETTABLE = frozenset({"name", "price_list", "models", "rpm", "tpm", "max_concurrency", "privacy",
                      "expires_at", "daily_budget", "monthly_budget", "currency"})


def check_amount(value: Any, label: str, *, positive: bool = False) -> Decimal:
    """An amount of money a key can hold: a finite Decimal, at least 0 (above 0 when
    `positive`), at most `MAX_AMOUNT`, with no digits below the nano-unit (1e-9)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InvalidParameters(f"{label} must be a number", param=label)
    if value < 0 or (positive and value == 0):
        raise InvalidParameters(f"{label} must be {'above' if positive else 'at least'} 0", param=label)
    if value > MAX_AMOUNT:
        raise InvalidParameters(f"{label} must be at most {MAX_AMOUNT:,}", param=label)
    if value != value.quantize(Decimal("1e-9")):
        raise InvalidParameters(f"{label} has digits below 1e-9, the smallest unit kept", param=label)
    return value


def check_currency(value: Any) -> str:
    """An ISO 4217-style code, upper-cased: three letters."""
    code = value.upper() if isinstance(value, str) else None
    if code is None or not CURRENCY_CODE.fullmatch(code):
        raise InvalidParameters(f"currency must be a three-letter code such as USD or CNY, not {value!r}",
                                param="currency")
    return code


def _check(fields: dict[str, Any]) -> None:
    """Refuse settings a key cannot have (for create and update alike); an expiry is turned
    to UTC in place (SQLite keeps no zone)."""
    name = fields.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > _NAME_LEN):
        raise InvalidParameters(f"name must be text of at most {_NAME_LEN} characters", param="name")
    models = fields.get("models")
    if models is not None and (not isinstance(models, list | tuple)
                               or not all(isinstance(m, str) and m for m in models)):
        raise InvalidParameters("models must be a list of model names", param="models")
    if fields.get("privacy") not in (None, "local"):
        raise InvalidParameters("privacy must be 'local' or unset", param="privacy")
    price_list = fields.get("price_list")
    if price_list is not None and not isinstance(price_list, str):
        raise InvalidParameters("price_list must be a price list id", param="price_list")
    for label in ("rpm", "tpm", "max_concurrency"):
        value = fields.get(label)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidParameters(f"{label} must be a whole number of at least 1", param=label)
    for label in ("daily_budget", "monthly_budget"):
        if fields.get(label) is not None:
            check_amount(fields[label], label)
    expires = fields.get("expires_at")
    if expires is not None:
        if not isinstance(expires, datetime) or expires.utcoffset() is None:
            raise InvalidParameters("expires_at must be a time with a zone", param="expires_at")
        fields["expires_at"] = assume_utc(expires)


def _same_currency(currency: str, pricing: tuple[str, str] | None) -> None:
    if pricing is not None and pricing[1] != currency:
        raise InvalidParameters(
            f"price list {pricing[0]!r} is in {pricing[1]}, the key in {currency}; use a key "
            f"in {pricing[1]} or a list in {currency} (`manxue prices` lists them)",
            param="price_list", code="currency_mismatch")


def _aware(dt: datetime | None) -> datetime | None:
    """A stored time in UTC (PostgreSQL answers in the session's time zone)."""
    return None if dt is None else assume_utc(dt)


def _record(row: Any, credit_sum: int) -> KeyRecord:
    models = frozenset(m for m in row.models.split(",") if m) if row.models else None
    return KeyRecord(
        id=row.id, tenant_id=row.tenant_id, tenant=row.tenant_name, name=row.name,
        prefix=row.prefix, key_hash=row.key_hash, created_at=_aware(row.created_at),  # type: ignore[arg-type]
        expires_at=_aware(row.expires_at), disabled=bool(row.disabled), models=models,
        rpm=row.rpm, tpm=row.tpm, max_concurrency=row.max_concurrency, privacy=row.privacy,
        price_list=row.price_list, currency=row.currency, prepaid=bool(row.prepaid),
        daily_budget_nano=row.daily_budget_nano, monthly_budget_nano=row.monthly_budget_nano,
        credits_nano=credit_sum, tenant_price_list=row.tenant_price_list)


def _tenant_id(c: Connection, name: str, create: bool) -> str:
    found = c.execute(select(tenants.c.id).where(tenants.c.name == name)).scalar()
    if found is not None:
        return str(found)
    if not create:
        raise InvalidParameters(f"no tenant named {name!r}", param="tenant")
    if not name or len(name) > _NAME_LEN:
        raise InvalidParameters(f"a tenant's name must be 1 to {_NAME_LEN} characters", param="tenant")
    tid = _id("ten")
    c.execute(insert(tenants).values(id=tid, name=name, created_at=_now()))
    return tid


class KeyStore:
    """Create, list, change and top up keys. Synchronous: call from a thread when serving."""

    def __init__(self, engine: Engine, lists: Mapping[str, Any] | None = None,
                 default_list: str | None = None, default_currency: str = "USD") -> None:
        """`lists` (price list id → list), `default_list` and `default_currency` are the
        gateway's (`[billing]`): with them, every change that decides which list prices a key
        is checked against the key's currency. Without `lists` that check is skipped."""
        self.engine = engine
        self.lists = lists
        self.default_list = default_list
        self.default_currency = default_currency

    def mismatched(self, records: Iterable[KeyRecord]) -> list[tuple[KeyRecord, str, str]]:
        """The keys billed in another currency than the list that prices them (keys made
        before currencies were checked, or after a list file changed): (key, list, its
        currency). Their requests are refused until they are given a list in their currency."""
        out = []
        for r in records:
            pricing = self._pricing(r.price_list, r.tenant_price_list)
            if pricing is not None and pricing[1] != r.currency:
                out.append((r, *pricing))
        return out

    def _pricing(self, own_list: str | None, tenant_list: str | None) -> tuple[str, str] | None:
        """The id and currency of the list that prices a key with these lists (None: no list,
        or the lists are not known here)."""
        ref = own_list or tenant_list or self.default_list
        pl = self.lists.get(ref) if self.lists is not None and ref is not None else None
        return None if pl is None or ref is None else (ref, str(pl.currency))

    # ---- tenants ------------------------------------------------------------------------------
    def tenant_id(self, name: str, create: bool = True) -> str:
        with self.engine.begin() as c:
            return _tenant_id(c, name, create)

    def tenant_price_list(self, name: str) -> str | None:
        """The tenant's own price list (None: it has none, or there is no such tenant yet)."""
        with self.engine.connect() as c:
            found = c.execute(select(tenants.c.price_list).where(tenants.c.name == name)).scalar()
        return None if found is None else str(found)

    def tenants(self) -> list[dict[str, Any]]:
        """Every tenant with its price list and number of keys."""
        n_keys = func.count(api_keys.c.id).label("keys")
        q = (select(tenants.c.id, tenants.c.name, tenants.c.price_list, tenants.c.created_at, n_keys)
             .outerjoin(api_keys, api_keys.c.tenant_id == tenants.c.id)
             .group_by(tenants.c.id, tenants.c.name, tenants.c.price_list, tenants.c.created_at)
             .order_by(tenants.c.name))
        with self.engine.connect() as c:
            return [{"id": r.id, "name": r.name, "price_list": r.price_list,
                     "created_at": _aware(r.created_at).isoformat(),  # type: ignore[union-attr]
                     "keys": int(r.keys)} for r in c.execute(q)]

    def set_tenant_price_list(self, name: str, price_list: str | None) -> dict[str, Any]:
        """Give a tenant its own price list (None: the gateway's default) for those of its keys
        that name none; the keys count as changed, so running gateways see it at their next
        key refresh. Refused when such a key is in another currency than the list that would
        price it."""
        tid = self.tenant_id(name, create=False)
        pricing = self._pricing(None, price_list)
        if pricing is not None:
            others = [r.id for r in self.all(name) if r.price_list is None and r.currency != pricing[1]]
            if others:
                raise InvalidParameters(
                    f"price list {pricing[0]!r} is in {pricing[1]}, but key(s) {', '.join(others)} "
                    f"of {name!r} would be priced by it and are billed in another currency; give "
                    "them a list of their own first (`manxue keys set KEY --price-list ID`)",
                    param="price_list", code="currency_mismatch")
        with self.engine.begin() as c:
            c.execute(update(tenants).where(tenants.c.id == tid).values(price_list=price_list))
            c.execute(update(api_keys).where(api_keys.c.tenant_id == tid).values(updated_at=_now()))
        return next(t for t in self.tenants() if t["id"] == tid)

    # ---- keys ---------------------------------------------------------------------------------
    def create(self, tenant: str, *, name: str | None = None, balance: Decimal | None = None,
               currency: str | None = None, price_list: str | None = None,
               models: list[str] | None = None, rpm: int | None = None, tpm: int | None = None,
               max_concurrency: int | None = None, privacy: str | None = None,
               expires_at: datetime | None = None, daily_budget: Decimal | None = None,
               monthly_budget: Decimal | None = None) -> tuple[KeyRecord, str]:
        """Create a key; return its record and the secret (the only time it is available).
        The key's currency defaults to that of the list that will price it (its own, its
        tenant's or the gateway's default), else to the gateway's currency, and must match
        that list's.
        Everything is checked before anything is written; a new tenant and its first key are
        written together."""
        fields: dict[str, Any] = {
            "name": name, "models": models, "privacy": privacy, "price_list": price_list, "rpm": rpm,
            "tpm": tpm, "max_concurrency": max_concurrency, "expires_at": expires_at,
            "daily_budget": daily_budget, "monthly_budget": monthly_budget}
        _check(fields)
        expires_at = fields["expires_at"]
        if not isinstance(tenant, str) or not tenant:
            raise InvalidParameters("a key needs a tenant", param="tenant")
        if balance is not None:
            check_amount(balance, "balance")
        pricing = self._pricing(price_list, self.tenant_price_list(tenant))
        currency = check_currency(currency or (pricing[1] if pricing else self.default_currency))
        _same_currency(currency, pricing)
        secret = new_secret()
        kid = _id("key")
        now = _now()
        for attempt in (1, 2):  # a second writer may create the same new tenant meanwhile
            try:
                with self.engine.begin() as c:
                    tid = _tenant_id(c, tenant, True)
                    c.execute(insert(api_keys).values(
                        id=kid, tenant_id=tid, name=name, prefix=secret[:_SHOWN_PREFIX_LEN],
                        key_hash=hash_key(secret), created_at=now, updated_at=now,
                        expires_at=expires_at, disabled=False,
                        models=",".join(models) if models else None, rpm=rpm, tpm=tpm,
                        max_concurrency=max_concurrency, privacy=privacy, price_list=price_list,
                        currency=currency, prepaid=balance is not None,
                        daily_budget_nano=to_nano(daily_budget) if daily_budget is not None else None,
                        monthly_budget_nano=to_nano(monthly_budget) if monthly_budget is not None else None,
                    ))
                    if balance:
                        c.execute(insert(credits).values(key_id=kid, amount_nano=to_nano(balance),
                                                         currency=currency, at=now,
                                                         note="opening balance"))
                break
            except IntegrityError:
                if attempt == 2:
                    raise
        return self.get(kid), secret

    def _select(self, changed_after: datetime | None = None) -> Any:
        credit_sum = select(credits.c.key_id, func.sum(credits.c.amount_nano).label("total"))
        if changed_after is not None:  # sum only the credits of the keys asked for
            credit_sum = credit_sum.where(credits.c.key_id.in_(
                select(api_keys.c.id).where(api_keys.c.updated_at > changed_after)))
        sums = credit_sum.group_by(credits.c.key_id).subquery()
        q = (select(api_keys, tenants.c.name.label("tenant_name"),
                    tenants.c.price_list.label("tenant_price_list"),
                    func.coalesce(sums.c.total, 0).label("credit_total"))
             .join(tenants, tenants.c.id == api_keys.c.tenant_id)
             .outerjoin(sums, sums.c.key_id == api_keys.c.id))
        return q if changed_after is None else q.where(api_keys.c.updated_at > changed_after)

    def changed_since(self, since: datetime) -> list[KeyRecord]:
        """Keys created or changed (disabled, rotated, topped up) after `since`."""
        with self.engine.connect() as c:
            return [_record(r, int(r.credit_total)) for r in c.execute(self._select(since))]

    def all(self, tenant: str | None = None) -> list[KeyRecord]:
        q = self._select().order_by(api_keys.c.created_at)
        if tenant is not None:
            q = q.where(tenants.c.name == tenant)
        with self.engine.connect() as c:
            return [_record(r, int(r.credit_total)) for r in c.execute(q)]

    def get(self, ref: str) -> KeyRecord:
        """A key by id, by shown prefix, or by its full secret."""
        q = self._select().where(
            (api_keys.c.id == ref) | (api_keys.c.prefix == ref) | (api_keys.c.key_hash == hash_key(ref)))
        with self.engine.connect() as c:
            rows = list(c.execute(q))
        if not rows:
            raise KeyNotFound(f"no API key {ref!r} (give its id or prefix; `manxue keys list` shows them)",
                              param="key")
        if len(rows) > 1:
            raise InvalidParameters(f"{ref!r} matches several keys; give the key id", param="key")
        return _record(rows[0], int(rows[0].credit_total))

    def update(self, ref: str, changes: dict[str, Any]) -> KeyRecord:
        """Change a key's settings: each of `SETTABLE` given is set, None clearing it (no
        limit, no allow-list, no expiry, the tenant's or default price list). The list that
        prices the key afterwards must be in its currency; the currency itself can change
        only while the key holds no credits (a balance is never converted)."""
        unknown = set(changes) - SETTABLE
        if unknown:
            raise InvalidParameters(f"cannot change {', '.join(sorted(unknown))}; settable: "
                                    f"{', '.join(sorted(SETTABLE))}", param=sorted(unknown)[0])
        changes = dict(changes)
        _check(changes)
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "models":
                values["models"] = ",".join(value) if value else None
            elif name in ("daily_budget", "monthly_budget"):
                values[f"{name}_nano"] = to_nano(value) if value is not None else None
            else:
                values[name] = value
        rec = self.get(ref)
        currency = check_currency(changes.get("currency", rec.currency))
        if "currency" in changes:
            values["currency"] = currency
            if currency != rec.currency and rec.credits_nano:
                raise InvalidParameters(
                    f"key {rec.id} holds credits in {rec.currency}; its currency cannot change "
                    "(create a new key in the other currency)", param="currency")
        if "price_list" in changes or "currency" in changes:
            own = changes.get("price_list", rec.price_list)
            _same_currency(currency, self._pricing(own, rec.tenant_price_list))
        with self.engine.begin() as c:
            c.execute(update(api_keys).where(api_keys.c.id == rec.id).values(**values, updated_at=_now()))
        return self.get(rec.id)

    def set_disabled(self, ref: str, disabled: bool = True) -> KeyRecord:
        kid = self.get(ref).id
        with self.engine.begin() as c:
            c.execute(update(api_keys).where(api_keys.c.id == kid)
                      .values(disabled=disabled, updated_at=_now()))
        return self.get(kid)

    def rotate(self, ref: str) -> tuple[KeyRecord, str]:
        """A new secret for the same key (limits, balance and history stay); the old one stops."""
        kid = self.get(ref).id
        secret = new_secret()
        with self.engine.begin() as c:
            c.execute(update(api_keys).where(api_keys.c.id == kid).values(
                key_hash=hash_key(secret), prefix=secret[:_SHOWN_PREFIX_LEN], updated_at=_now()))
        return self.get(kid), secret

    def topup(self, ref: str, amount: Decimal, note: str | None = None) -> KeyRecord:
        check_amount(amount, "amount", positive=True)
        if note is not None and not isinstance(note, str):
            raise InvalidParameters("note must be text", param="note")
        rec = self.get(ref)
        with self.engine.connect() as c:
            spent = int(c.execute(select(func.coalesce(func.sum(ledger.c.cost_nano), 0))
                                  .where(ledger.c.key_id == rec.id)).scalar() or 0)
        if rec.credits_nano - spent + to_nano(amount) > to_nano(MAX_AMOUNT):
            raise InvalidParameters(f"a key's balance may be at most {MAX_AMOUNT:,} {rec.currency}",
                                    param="amount")
        if rec.credits_nano + to_nano(amount) > _MAX_CREDITS_NANO:
            raise InvalidParameters(f"key {rec.id} has been given {_MAX_CREDITS_NANO // 10**9:,} "
                                    f"{rec.currency} in all, the most one key can record; create "
                                    "a new key", param="amount")
        now = _now()
        with self.engine.begin() as c:
            c.execute(insert(credits).values(key_id=rec.id, amount_nano=to_nano(amount),
                                             currency=rec.currency, at=now, note=note))
            c.execute(update(api_keys).where(api_keys.c.id == rec.id)
                      .values(prepaid=True, updated_at=now))
        return self.get(rec.id)

    def spent(self) -> dict[str, int]:
        """Settled spending per key, from the ledger."""
        q = select(ledger.c.key_id, func.sum(ledger.c.cost_nano)).group_by(ledger.c.key_id)
        with self.engine.connect() as c:
            return {str(k): int(v or 0) for k, v in c.execute(q) if k is not None}

    def spent_since(self, since: datetime) -> dict[str, int]:
        q = (select(ledger.c.key_id, func.sum(ledger.c.cost_nano)).where(ledger.c.at >= since)
             .group_by(ledger.c.key_id))
        with self.engine.connect() as c:
            return {str(k): int(v or 0) for k, v in c.execute(q) if k is not None}

    def count(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(api_keys)).scalar() or 0)
