"""Model and hardware catalogs: shipped data files plus the user's own TOML file.

A user file uses the shipped format (plan/data/models.toml, plan/data/hardware.toml) in one
file: `[[model]]` and `[[hardware]]` tables. A `[[model]]` may instead point at a model's
files: `config = "path/to/config.json"` or `gguf = "path/to/model.gguf"` (relative to the
TOML file), with an optional `id`. Entries with a shipped id replace the shipped entry.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from manxue.errors import ConfigError, InvalidParameters, ModelNotFound
from manxue.plan.specs import ATTENTION_KINDS, Attention, Experts, HardwareSpec, ModelSpec

T = TypeVar("T", ModelSpec, HardwareSpec)

_MODEL_KEYS = {"id", "name", "aliases", "api_models", "layers", "hidden", "vocab", "max_positions",
               "params_total", "params_active", "native_precision", "tokenizer", "source", "note",
               "attention", "experts"}
_HW_KEYS = {"id", "name", "kind", "memory_gb", "bandwidth_tbs", "bf16_tflops", "fp8_tflops",
            "int8_tops", "vector_tflops", "sockets", "interconnect", "interconnect_gbs",
            "per_node", "source", "note", "aliases", "unit"}


def _check(t: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(t) - allowed)
    if unknown:
        raise InvalidParameters(f"{where}: unknown key(s) {', '.join(unknown)}")
    if "id" not in t:
        raise InvalidParameters(f"{where}: id is required")


def _attention(t: dict[str, Any], where: str) -> Attention:
    kind = str(t.get("kind", "")).lower()
    if kind not in ATTENTION_KINDS:
        raise InvalidParameters(f"{where}.attention.kind must be one of {', '.join(ATTENTION_KINDS)}")
    heads = int(t["heads"])
    head_dim = int(t.get("head_dim", 0))
    return Attention(
        kind=kind, heads=heads, kv_heads=int(t.get("kv_heads", heads)), head_dim=head_dim,
        v_head_dim=int(t.get("v_head_dim", head_dim)), kv_lora_rank=int(t.get("kv_lora_rank", 0)),
        q_lora_rank=int(t.get("q_lora_rank", 0)), qk_rope_head_dim=int(t.get("qk_rope_head_dim", 0)),
        qk_nope_head_dim=int(t.get("qk_nope_head_dim", 0)))


def model_from_table(t: dict[str, Any], where: str) -> ModelSpec:
    _check(t, _MODEL_KEYS, where)
    def opt(key: str) -> int | None:
        return int(t[key]) if key in t else None

    if "attention" in t and "layers" not in t:
        raise InvalidParameters(f"{where}: layers is required with attention")
    experts = t.get("experts")
    total = float(t["params_total"])
    return ModelSpec(
        id=str(t["id"]), name=str(t.get("name", t["id"])), params_total=total,
        params_active=float(t.get("params_active", total)),
        native_precision=str(t.get("native_precision", "bf16")),
        attention=_attention(t["attention"], where) if "attention" in t else None,
        experts=Experts(int(experts["routed"]), int(experts.get("shared", 0)),
                        int(experts["per_token"]), int(experts.get("dense_layers", 0)))
        if experts else None,
        tokenizer=str(t.get("tokenizer", "")), aliases=tuple(t.get("aliases", ())),
        api_models=tuple(t.get("api_models", ())), source=str(t.get("source", "")),
        note=str(t.get("note", "")), layers=opt("layers"), hidden=opt("hidden"),
        vocab=opt("vocab"), max_positions=opt("max_positions"))


def hardware_from_table(t: dict[str, Any], where: str) -> HardwareSpec:
    _check(t, _HW_KEYS, where)
    opt = {k: float(t[k]) for k in ("fp8_tflops", "int8_tops", "vector_tflops", "interconnect_gbs") if k in t}
    return HardwareSpec(
        id=str(t["id"]), name=str(t.get("name", t["id"])), kind=str(t.get("kind", "gpu")),
        memory_gb=float(t["memory_gb"]), bandwidth_tbs=float(t["bandwidth_tbs"]),
        bf16_tflops=float(t["bf16_tflops"]), interconnect=str(t.get("interconnect", "")),
        per_node=int(t.get("per_node", 1)), sockets=int(t.get("sockets", 1)),
        source=str(t.get("source", "")), unit=str(t.get("unit", "")),
        note=str(t.get("note", "")), aliases=tuple(t.get("aliases", ())), **opt)


def _index(items: list[Any]) -> dict[str, Any]:
    return {i.id: i for i in items}


@dataclass(frozen=True)
class Catalog:
    models: Mapping[str, ModelSpec]
    hardware: Mapping[str, HardwareSpec]

    def model(self, name: str, allow_paths: bool = True) -> ModelSpec:
        """By id or alias (case-insensitive); with allow_paths, a config.json or .gguf path."""
        found = _lookup(self.models, name)
        if found is not None:
            return found
        if allow_paths and name.endswith((".json", ".gguf")):
            return model_from_path(Path(name))
        raise ModelNotFound(f"unknown model {name!r}; known: {', '.join(sorted(self.models))}"
                            + (" (or a config.json / .gguf path)" if allow_paths else ""),
                            param="model")

    def device(self, name: str) -> HardwareSpec:
        found = _lookup(self.hardware, name)
        if found is None:
            raise InvalidParameters(f"unknown hardware {name!r}; known: "
                                    f"{', '.join(sorted(self.hardware))}", param="hardware")
        return found

    def merged(self, models: list[ModelSpec], hardware: list[HardwareSpec]) -> Catalog:
        return Catalog(MappingProxyType(dict(self.models) | _index(models)),
                       MappingProxyType(dict(self.hardware) | _index(hardware)))


def _lookup(table: Mapping[str, T], name: str) -> T | None:
    key = name.strip().lower()
    for item in table.values():
        if key == item.id.lower() or key in (a.lower() for a in item.aliases):
            return item
    return None


def model_from_path(path: Path, model_id: str | None = None) -> ModelSpec:
    if not path.is_file():
        raise InvalidParameters(f"no such file: {path}", param="model")
    if path.suffix == ".gguf":
        from manxue.plan.gguf_reader import model_from_gguf

        spec = model_from_gguf(path)
    else:
        from manxue.plan.hf_config import model_from_config_file

        spec = model_from_config_file(path)
    return replace(spec, id=model_id) if model_id else spec


def _read_toml(text: str, origin: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None


@lru_cache(maxsize=1)
def builtin_catalog() -> Catalog:
    data = resources.files("manxue.plan") / "data"
    models = _read_toml((data / "models.toml").read_text(encoding="utf-8"), "plan/data/models.toml")
    hw = _read_toml((data / "hardware.toml").read_text(encoding="utf-8"), "plan/data/hardware.toml")
    return Catalog(
        MappingProxyType(_index([model_from_table(t, f"models.toml model[{i}]")
                                 for i, t in enumerate(models.get("model", []))])),
        MappingProxyType(_index([hardware_from_table(t, f"hardware.toml hardware[{i}]")
                                 for i, t in enumerate(hw.get("hardware", []))])))


def load_catalog(path: str | Path | None) -> Catalog:
    """The shipped catalog, extended (and overridden by id) with the user's TOML file."""
    base = builtin_catalog()
    if path is None:
        return base
    p = Path(path)
    try:
        doc = _read_toml(p.read_text(encoding="utf-8"), str(p))
        unknown = sorted(set(doc) - {"model", "hardware"})
        if unknown:
            raise InvalidParameters(f"unknown table(s) {', '.join(unknown)}; use [[model]] and "
                                    "[[hardware]]")
        models = []
        for i, t in enumerate(doc.get("model", [])):
            ref = t.get("config") or t.get("gguf")
            if ref:
                models.append(model_from_path(p.parent / str(ref), t.get("id")))
            else:
                models.append(model_from_table(t, f"model[{i}]"))
        hardware = [hardware_from_table(t, f"hardware[{i}]")
                    for i, t in enumerate(doc.get("hardware", []))]
    except OSError as exc:
        raise ConfigError(f"cannot read catalog file {p}: {exc.strerror or exc}") from None
    except (InvalidParameters, KeyError, TypeError, ValueError) as exc:
        detail = exc.message if isinstance(exc, InvalidParameters) else f"bad value: {exc}"
        raise ConfigError(f"{p}: {detail}") from None
    return base.merged(models, hardware)
