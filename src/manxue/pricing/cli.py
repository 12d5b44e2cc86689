"""`manxue prices`: the price lists the server bills with (shipped ones and the operator's own),
and what a list charges, per model, at a given time."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from manxue.errors import ConfigError, ManxueError
from manxue.pricing.catalog import configured_price_lists
from manxue.pricing.lists import PriceEntry, PriceList, quote
from manxue.settings import load_settings
from manxue.timeutil import assume_utc

err = Console(stderr=True)
NONE = "—"
"""What a table prints for a value that is not there (never "None")."""


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)


def _when(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise _fail("--at must be an ISO 8601 time, e.g. 2026-11-01T02:00:00+08:00") from None
    return assume_utc(dt)


def _lists(config: Path | None) -> dict[str, PriceList]:
    try:
        return configured_price_lists(load_settings(config).billing.price_lists)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _entry_row(pl: PriceList, e: PriceEntry, when: datetime) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": e.model,
        "effective_from": e.effective_from.isoformat() if e.effective_from else None,
        "effective_to": e.effective_to.isoformat() if e.effective_to else None,
        "base": e.base.as_dict(),
        "windows": [w.describe() for w in e.windows],
        "in_force": e.covers(when),
        "source": e.source,
    }
    if row["in_force"]:
        q = quote(pl, e.model, when)
        row["now"] = {**q.prices.as_dict(), "window": q.window}
    return row


def _summary_row(pl: PriceList, when: datetime) -> dict[str, Any]:
    in_force = sorted({e.model for e in pl.entries if e.covers(when)})
    return {"id": pl.id, "currency": pl.currency, "title": pl.title, "models": list(pl.models()),
            "in_force": in_force, "source": pl.source}


def _triple(p: dict[str, str]) -> str:
    return f"{p['hit']} / {p['miss']} / {p['output']}"


def prices(
    list_id: Annotated[str | None, typer.Argument(
        metavar="LIST", show_default=False,
        help="A price list id: show its entries. \\[default: one line per list]")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="The time to price at (ISO 8601; no offset means UTC). \\[default: now]")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar="MANXUE_CONFIG",
        help="The server's TOML config (for \\[billing] price_lists).")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Price lists for billing: shipped DeepSeek / OpenAI history and your own.

    Prices are per 1,000,000 tokens: cache-hit input / cache-miss input / output (reasoning
    included). Without LIST, one line per list and the models it prices at --at; with LIST,
    every entry of that list, the one in force at --at marked, with the price it charges then
    (time-of-day windows applied).

    Example: manxue prices deepseek-2026-08 --at 2026-11-01T02:00:00+08:00
    """
    when = _when(at)
    lists = _lists(config)
    if list_id is None:
        rows = [_summary_row(pl, when) for pl in lists.values()
                if model is None or model in pl.models()]
        if json:
            _emit(rows)
            return
        table = Table("id", "currency", f"models priced at {when:%Y-%m-%d %H:%M}Z")
        for r in rows:
            table.add_row(r["id"], r["currency"] or NONE, ", ".join(r["in_force"]) or "[dim]none[/dim]")
        Console().print(table)
        Console().print("`manxue prices LIST` shows a list's entries and time-of-day windows.")
        return
    pl = lists.get(list_id)
    if pl is None:
        raise _fail(f"unknown price list {list_id!r}; known: {', '.join(sorted(lists))}")
    try:
        entries = [e for m in ([model] if model else sorted(pl.models())) for e in pl.entries_for(m)]
        rows = [_entry_row(pl, e, when) for e in entries]
    except ManxueError as exc:
        raise _fail(exc.message) from None
    if json:
        _emit({"id": pl.id, "currency": pl.currency, "title": pl.title, "source": pl.source,
               "note": pl.note, "at": when.isoformat(), "entries": rows})
        return
    table = Table("model", "in force (UTC)", "hit / miss / output", f"at {when:%Y-%m-%d %H:%M}Z",
                  title=f"{pl.id}: {pl.currency} per 1M tokens")
    for r, e in zip(rows, entries, strict=True):
        now = r.get("now")
        table.add_row(r["model"], _period(e), _triple(r["base"]),
                      (_triple(now) + (f" {now['window']}" if now["window"] else "")) if now else NONE)
        for w in e.windows:
            table.add_row(f"  {w.name}", w.span(), _triple(w.apply(e.base).as_dict()), "",
                          style="dim")
    Console().print(table)
    if pl.note:
        Console().print(pl.note)


def _period(e: PriceEntry) -> str:
    def fmt(t: datetime | None) -> str:
        return "" if t is None else t.strftime("%Y-%m-%d %H:%M").removesuffix(" 00:00")
    return f"{fmt(e.effective_from) or '…'} → {fmt(e.effective_to) or '…'}"


def _emit(obj: Any) -> None:
    sys.stdout.write(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode() + "\n")
