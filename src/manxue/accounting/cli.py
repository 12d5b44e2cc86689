"""`manxue keys`, `manxue usage`, `manxue invoice`: work on the database the server uses,
whether or not the server is running."""

from __future__ import annotations

import sys
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from manxue.accounting import reports
from manxue.accounting.fixed_costs import fixed_costs
from manxue.accounting.keys import KeyStore
from manxue.errors import ConfigError, ManxueError
from manxue.settings import Settings, load_settings
from manxue.store.db import open_engine
from manxue.timeutil import assume_utc

keys_app = typer.Typer(help="Create, list, change, disable, rotate and top up API keys.\n\n"
                            "Example: manxue keys create --tenant acme --balance 20",
                       no_args_is_help=True, rich_markup_mode="rich")
tenants_app = typer.Typer(help="List tenants and give one its own price list.\n\n"
                               "Example: manxue tenants set acme --price-list deepseek-2026-08",
                          no_args_is_help=True, rich_markup_mode="rich")
out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", envvar="MANXUE_CONFIG",
                                                help="The server's TOML config (for database_url).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
NameOpt = Annotated[str | None, typer.Option(help="A label for the key.")]
PriceListOpt = Annotated[str | None, typer.Option("--price-list", help="Price list id.")]
ModelsOpt = Annotated[str | None, typer.Option(help="Comma-separated models the key may use.")]
RpmOpt = Annotated[int | None, typer.Option(help="Requests per minute.")]
TpmOpt = Annotated[int | None, typer.Option(help="Tokens per minute.")]
ConcurrencyOpt = Annotated[int | None, typer.Option("--max-concurrency",
                                                   help="Requests in flight at once.")]
PrivacyOpt = Annotated[str | None, typer.Option(help="'local': only local deployments.")]
ExpiresOpt = Annotated[str | None, typer.Option(help="Expiry, ISO 8601, e.g. 2027-01-01.")]
DailyOpt = Annotated[str | None, typer.Option(
    "--daily-budget", help="Most the key may spend per UTC day, in its currency.")]
MonthlyOpt = Annotated[str | None, typer.Option(
    "--monthly-budget", help="Most the key may spend per UTC month, in its currency.")]
RefArg = Annotated[str, typer.Argument(metavar="KEY", help="Key id or prefix.", show_default=False)]
NONE = "—"
"""What a table prints for a value that is not there (never "None")."""


def _store(config: Path | None) -> KeyStore:
    return _open(config)[1]


def _open(config: Path | None) -> tuple[Settings, KeyStore]:
    """The config and a key store that knows its price lists (to check keys' currencies)."""
    from manxue.accounting.prices import PriceBook

    try:
        settings = load_settings(config)
        b = settings.billing
        return settings, KeyStore(open_engine(settings.resolved_database_url()),
                                  PriceBook.from_settings(settings).lists, b.default_price_list,
                                  b.currency)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _check_price_list(config: Path | None, list_id: str) -> None:
    """Exit 2, naming the known ones, unless the config knows this price list."""
    from manxue.accounting.prices import PriceBook

    try:
        lists = PriceBook.from_settings(load_settings(config)).lists
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if list_id not in lists:
        err.print(f"[red]error:[/red] unknown price list {list_id!r}; known: {', '.join(sorted(lists))}")
        raise typer.Exit(2)


def _whole(table: Table) -> Table:
    """Wrap a cell that does not fit the terminal instead of cutting it short: ids and amounts
    must be read whole."""
    for column in table.columns:
        column.overflow = "fold"
    return table


def _fail(exc: ManxueError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc.message}")
    return typer.Exit(1)


def _emit_json(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")


def _money(value: str | None, label: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        err.print(f"[red]error:[/red] {label} must be a number, not {value!r}")
        raise typer.Exit(2) from None


def _when(value: str | None, label: str) -> datetime | None:
    if value is None:
        return None
    try:
        return assume_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # overflow: a zone that moves it past year 1 or 9999
        err.print(f"[red]error:[/red] {label} must be an ISO 8601 date or time, e.g. 2026-11-01")
        raise typer.Exit(2) from None


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option(help="Customer the key belongs to (created if new).")],
    name: NameOpt = None,
    balance: Annotated[str | None, typer.Option(help="Prepaid balance; omit for a postpaid key.")] = None,
    currency: Annotated[str | None, typer.Option(
        help="Currency of the balance and prices. \\[default: the price list's, else USD]")] = None,
    price_list: PriceListOpt = None,
    models: ModelsOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    privacy: PrivacyOpt = None,
    expires: ExpiresOpt = None,
    daily_budget: DailyOpt = None,
    monthly_budget: MonthlyOpt = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Create a key. Its secret is printed once and never stored.

    Example: manxue keys create --tenant acme --balance 20 --rpm 60 --models deepseek-chat
    """
    store = _store(config)
    if price_list is not None:
        _check_price_list(config, price_list)
    try:
        rec, secret = store.create(
            tenant, name=name, balance=_money(balance, "--balance"), currency=currency,
            price_list=price_list, models=[m.strip() for m in models.split(",")] if models else None,
            rpm=rpm, tpm=tpm, max_concurrency=max_concurrency, privacy=privacy,
            expires_at=_when(expires, "--expires"), daily_budget=_money(daily_budget, "--daily-budget"),
            monthly_budget=_money(monthly_budget, "--monthly-budget"))
    except ManxueError as exc:
        raise _fail(exc) from None
    data = {**rec.public(0), "key": secret}
    if json:
        _emit_json(data)
        return
    out.print(f"created key [bold]{rec.id}[/bold] for tenant [bold]{tenant}[/bold]")
    out.print(f"secret (shown only now): [bold green]{secret}[/bold green]")


@keys_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """List keys (prefix only), with limits, balance and spending.

    Example: manxue keys list --tenant acme
    """
    store = _store(config)
    spent = store.spent()
    rows = [r.public(spent.get(r.id, 0)) for r in store.all(tenant)]
    if json:
        _emit_json(rows)
        return
    t = _whole(Table("id", "prefix", "tenant", "status", "balance", "spent", "limits", "models"))
    for r in rows:
        limits = " ".join(f"{k}={r[k]}" for k in ("rpm", "tpm", "max_concurrency") if r[k])
        status = r["status"]
        balance = f"{r['balance']} {r['currency']}" if r["balance"] is not None else "postpaid"
        t.add_row(r["id"], r["prefix"] + "…", _text(r["tenant"]), status, balance,
                  f"{r['spent']} {r['currency']}", limits or NONE, ",".join(r["models"] or []) or "all")
    out.print(t)


def _change(ref: str, config: Path | None, json: bool, action: str, **kw: Any) -> None:
    store = _store(config)
    try:
        if action == "disable":
            rec, secret = store.set_disabled(ref, True), None
        elif action == "enable":
            rec, secret = store.set_disabled(ref, False), None
        elif action == "rotate":
            rec, secret = store.rotate(ref)
        else:
            rec, secret = store.topup(ref, kw["amount"], kw.get("note")), None
    except ManxueError as exc:
        raise _fail(exc) from None
    data = rec.public(store.spent().get(rec.id, 0))
    if secret:
        data["key"] = secret
    if json:
        _emit_json(data)
    elif secret:
        out.print(f"new secret for {rec.id} (shown only now): [bold green]{secret}[/bold green]")
    else:
        balance = f", balance {data['balance']} {rec.currency}" if data["balance"] is not None else ""
        out.print(f"{rec.id}: {rec.status()}{balance}")


@keys_app.command("set")
def set_key(
    ref: RefArg,
    name: NameOpt = None,
    price_list: PriceListOpt = None,
    models: ModelsOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_concurrency: ConcurrencyOpt = None,
    privacy: PrivacyOpt = None,
    expires: ExpiresOpt = None,
    daily_budget: DailyOpt = None,
    monthly_budget: MonthlyOpt = None,
    currency: Annotated[str | None, typer.Option(
        help="A new currency (only for a key that holds no credits).")] = None,
    unset: Annotated[list[str] | None, typer.Option(
        "--unset", help="Clear a setting (repeatable): rpm, tpm, max_concurrency, models, "
        "price_list, privacy, expires, daily_budget, monthly_budget, name.")] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Change a key's limits, models, price list, privacy, budgets or expiry (seen by running
    gateways within the key refresh interval).

    Example: manxue keys set key_0123456789abcdef --rpm 120 --unset tpm
    """
    changes: dict[str, Any] = {}
    for field, value in (("name", name), ("price_list", price_list), ("rpm", rpm), ("tpm", tpm),
                         ("max_concurrency", max_concurrency), ("privacy", privacy),
                         ("currency", currency)):
        if value is not None:
            changes[field] = value
    if models is not None:
        changes["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if expires is not None:
        changes["expires_at"] = _when(expires, "--expires")
    for field, text in (("daily_budget", daily_budget), ("monthly_budget", monthly_budget)):
        if text is not None:
            changes[field] = _money(text, f"--{field.replace('_', '-')}")
    for field in unset or []:
        field = "expires_at" if field == "expires" else field.replace("-", "_")
        if field in changes:
            err.print(f"[red]error:[/red] {field} is both set and unset")
            raise typer.Exit(2)
        changes[field] = None
    if not changes:
        err.print("[red]error:[/red] nothing to change: give a setting (see --help) or --unset")
        raise typer.Exit(2)
    if price_list is not None:
        _check_price_list(config, price_list)
    store = _store(config)
    try:
        rec = store.update(ref, changes)
    except ManxueError as exc:
        raise _fail(exc) from None
    data = rec.public(store.spent().get(rec.id, 0))
    if json:
        _emit_json(data)
        return
    out.print(f"{rec.id}: changed {', '.join(sorted(changes))}")


@keys_app.command("disable")
def disable(ref: RefArg, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Disable a key (requests with it get 401 within seconds).

    Example: manxue keys disable key_0123456789abcdef
    """
    _change(ref, config, json, "disable")


@keys_app.command("enable")
def enable(ref: RefArg, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Enable a disabled key again.

    Example: manxue keys enable key_0123456789abcdef
    """
    _change(ref, config, json, "enable")


@keys_app.command("rotate")
def rotate(ref: RefArg, config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Give a key a new secret; the old secret stops working.

    Example: manxue keys rotate key_0123456789abcdef
    """
    _change(ref, config, json, "rotate")


@keys_app.command("topup")
def topup(ref: RefArg,
          amount: Annotated[str, typer.Argument(metavar="AMOUNT", help="Amount in the key's currency.",
                                                show_default=False)],
          note: Annotated[str | None, typer.Option(help="Why (kept with the credit).")] = None,
          config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Add prepaid credit to a key.

    Example: manxue keys topup key_0123456789abcdef 50 --note "invoice 2026-11"
    """
    value = _money(amount, "amount")
    assert value is not None
    _change(ref, config, json, "topup", amount=value, note=note)


@tenants_app.command("list")
def list_tenants(config: ConfigOpt = None, json: JsonOpt = False) -> None:
    """Tenants, their price lists and how many keys each has.

    Example: manxue tenants list --json
    """
    rows = _store(config).tenants()
    if json:
        _emit_json(rows)
        return
    t = _whole(Table("tenant", "price list", "keys", "created"))
    for r in rows:
        t.add_row(_text(r["name"]), r["price_list"] or "[dim](the default)[/dim]", str(r["keys"]),
                  _text(r["created_at"])[:10])
    out.print(t)


@tenants_app.command("set")
def set_tenant(
    tenant: Annotated[str, typer.Argument(metavar="TENANT", help="The tenant's name.",
                                          show_default=False)],
    price_list: Annotated[str | None, typer.Option(
        "--price-list", help="Price list id for the tenant's keys that name none.")] = None,
    clear_price_list: Annotated[bool, typer.Option(
        "--clear-price-list", help="Back to \\[billing] default_price_list.")] = False,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Give a tenant its own price list (a key's own --price-list still wins).

    Example: manxue tenants set acme --price-list deepseek-2026-08
    """
    if (price_list is None) == (not clear_price_list):
        err.print("[red]error:[/red] give --price-list ID or --clear-price-list")
        raise typer.Exit(2)
    if price_list is not None:
        _check_price_list(config, price_list)
    try:
        row = _store(config).set_tenant_price_list(tenant, price_list)
    except ManxueError as exc:
        raise _fail(exc) from None
    if json:
        _emit_json(row)
        return
    out.print(f"tenant [bold]{tenant}[/bold]: price list {row['price_list'] or '(the default)'}"
              f" for {row['keys']} key(s) that name none")


def usage(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    key: Annotated[str | None, typer.Option(help="Only this key (id or prefix).")] = None,
    since: Annotated[str | None, typer.Option(help="From this time (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this time (ISO 8601).")] = None,
    by: Annotated[str | None, typer.Option(
        help="Totals by tenant, key, model, deployment or day instead of rows.")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="Only the newest N rows (printed oldest first). \\[default: every row]")] = None,
    config: ConfigOpt = None,
    json: JsonOpt = False,
) -> None:
    """Ledger rows, or totals with cache-hit rate, revenue, upstream and GPU-hour costs, margin.

    Example: manxue usage --tenant acme --since 2026-11-01 --limit 20
    """
    settings, store = _open(config)
    s, u = _when(since, "--since"), _when(until, "--until")
    fixed = fixed_costs(settings.deployments, settings.billing.currency)
    try:
        data = (reports.summary(store.engine, by, tenant=tenant, key=key, since=s, until=u,
                                fixed=fixed) if by
                else reports.usage_rows(store.engine, tenant=tenant, key=key, since=s, until=u,
                                        limit=limit))
    except ManxueError as exc:
        raise _fail(exc) from None
    if json:
        _emit_json(data)
        return
    if not data:
        out.print("no usage recorded for this selection")
        return
    cols = ([by, "requests", "prompt_tokens", "cache_hit_rate", "completion_tokens", "revenue",
             "upstream_cost", *(["fixed_cost"] if "fixed_cost" in data[0] else []), "margin",
             "currency"] if by else
            ["at", "tenant", "model", "deployment", "status", "prompt_tokens", "cache_hit_tokens",
             "completion_tokens", "cost", "currency"])
    t = Table(box=None, pad_edge=False, header_style="bold")
    for c in cols:
        text = c in (by, "at", "tenant", "model", "deployment", "status", "currency")
        t.add_column(_HEADERS.get(c, c), justify="left" if text else "right", overflow="fold")
    for row in data:
        t.add_row(*[_cell(c, row.get(c)) for c in cols])
    out.print(t)


_HEADERS = {"prompt_tokens": "prompt", "cache_hit_tokens": "cache hit", "cache_hit_rate": "hit rate",
            "completion_tokens": "output", "upstream_cost": "upstream", "fixed_cost": "fixed",
            "currency": "cur"}


def _text(value: Any) -> str:
    return NONE if value is None or value == "" else str(value)


def _cell(column: str, value: Any) -> str:
    if column == "at" and isinstance(value, str):  # to the second, in UTC, for people
        return value[:19].replace("T", " ")
    return _text(value)


def invoice(
    tenant: Annotated[str, typer.Option(help="The tenant to invoice.")],
    month: Annotated[str, typer.Option(help="Month, e.g. 2026-11.")],
    output: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the invoice here. \\[default: standard output]")] = None,
    config: ConfigOpt = None,
    json: Annotated[bool, typer.Option(
        "--json", help="Print JSON instead of CSV. \\[default: CSV]")] = False,
) -> None:
    """An invoice for one tenant and month: CSV (a line per key and model, then a total per
    currency), or with --json the same lines and totals as JSON.

    Example: manxue invoice --tenant acme --month 2026-11 --out acme-2026-11.csv
    """
    store = _store(config)
    try:
        if json:
            text = orjson.dumps(reports.invoice(store.engine, tenant, month),
                                option=orjson.OPT_INDENT_2).decode() + "\n"
        else:
            text = reports.invoice_csv(store.engine, tenant, month)
    except ManxueError as exc:
        raise _fail(exc) from None
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        out.print(f"wrote {output}")
