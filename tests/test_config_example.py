"""docs/config.example.toml: it loads, it shows every setting, its plain values are the
defaults, and its example deployments' cost lists price their models today."""

from __future__ import annotations

import re
import time
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from manxue.accounting.prices import PriceBook
from manxue.settings import (
    BillingSettings,
    BreakerSettings,
    RouterSettings,
    ServerSettings,
    Settings,
    VerifySettings,
    load_settings,
    settings_from_dict,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "config.example.toml"
# A key without a default value to show is written commented out: "# key = value".
COMMENTED_KEY = re.compile(r"^# (?=[a-z_]+ = )", re.MULTILINE)


def _uncommented() -> dict[str, Any]:
    """The example with its commented-out keys switched on."""
    return tomllib.loads(COMMENTED_KEY.sub("", EXAMPLE.read_text(encoding="utf-8")))


def _models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The settings models a field holds: itself ("one"), a list of them ("list") or a table
    of them by name ("dict")."""
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("one", annotation)]
    if origin in (list, dict):
        inner = typing.get_args(annotation)[-1]
        return [(origin.__name__, m) for _, m in _models_in(inner)]
    if origin in (typing.Union, types.UnionType):
        return [found for arg in typing.get_args(annotation) for found in _models_in(arg)]
    return []


def _missing(model: type[BaseModel], tables: list[dict[str, Any]], where: str) -> list[str]:
    """Fields of `model` (and of the models inside it) that none of `tables` sets."""
    missing = []
    for name, field in model.model_fields.items():
        values = [t[name] for t in tables if name in t]
        if not values:
            missing.append(f"{where}.{name}")
            continue
        for shape, inner in _models_in(field.annotation):
            if shape == "one":
                subtables = values
            elif shape == "list":
                subtables = [item for v in values for item in v]
            else:
                subtables = [item for v in values for item in v.values()]
            missing += _missing(inner, subtables, f"{where}.{name}")
    return missing


def test_the_example_loads_as_it_is_and_with_its_commented_keys_on() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.deployments and settings.models
    assert {d.kind for d in settings.deployments} == {"openai", "local"}
    settings_from_dict(_uncommented(), source="config.example.toml, commented keys on")


def test_every_setting_appears_in_the_example() -> None:
    assert _missing(Settings, [_uncommented()], "config") == []


def test_plain_values_are_the_defaults() -> None:
    """In the sections that are tables of settings, a value is the default unless its line
    says "example"."""
    text = EXAMPLE.read_text(encoding="utf-8")
    raw = _uncommented()
    sections: dict[str, tuple[type[BaseModel], dict[str, Any]]] = {
        "server": (ServerSettings, raw["server"]),
        "verify": (VerifySettings, raw["verify"]),
        "router": (RouterSettings, raw["router"]),
        "router.breaker": (BreakerSettings, raw["router"]["breaker"]),
        "billing": (BillingSettings, raw["billing"]),
    }
    wrong = []
    for header, (model, table) in sections.items():
        body = text.split(f"\n[{header}]", 1)[1].split("\n[", 1)[0]
        marked = {m.group(1) for m in re.finditer(r"^#? ?([a-z_]+) = .*example", body, re.MULTILINE)}
        for name, value in table.items():
            if isinstance(value, dict) or name in marked:
                continue
            default = model.model_fields[name].default
            if value != default:
                wrong.append(f"[{header}] {name} = {value!r}: the default is {default!r}")
    assert wrong == []


def test_the_example_cost_lists_price_their_models_now() -> None:
    """An example deployment whose cost list has no price in force records upstream cost 0
    (deepseek-chat's prices ended on 2026-07-25)."""
    settings = load_settings(EXAMPLE)
    book = PriceBook.from_settings(settings)
    now = time.time()
    priced = [d for d in settings.deployments if d.cost_price_list is not None]
    assert priced
    for d in priced:
        found = book.lookup_at(d.cost_price_list, d.upstream_model or d.model, now) \
            or book.lookup_at(d.cost_price_list, d.model, now)
        assert found is not None, f"{d.name}: {d.cost_price_list} prices neither " \
                                  f"{d.upstream_model} nor {d.model} today"
