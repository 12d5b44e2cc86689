"""Options shared by `manxue plan` and its subcommands, and their parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from manxue.plan.values import parse_money, parse_time
from manxue.pricing import PriceList, load_price_lists

__all__ = ["parse_money", "parse_time", "user_price_lists"]

ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", show_default=False,
    help="Catalog id or alias (see `manxue plan models`), or a config.json / .gguf path.")]
HardwareOpt = Annotated[str | None, typer.Option(
    "--hardware", show_default=False, help="Hardware id (see `manxue plan hardware`).")]
GpusOpt = Annotated[int, typer.Option("--gpus", "-n", min=1, help="Accelerators (or hosts).")]
PrecisionOpt = Annotated[str | None, typer.Option(
    help="Weights: bf16, fp8, int8, int4, a GGUF type (q4_k_m, …), ud-iq1_s or bpw:X. "
         "\\[default: the model's native precision]", show_default=False)]
ContextOpt = Annotated[int, typer.Option(min=1, help="Tokens of KV cache per sequence.")]
GpuHourOpt = Annotated[str, typer.Option("--gpu-hour", help="USD per accelerator-hour.")]
PriceListOpt = Annotated[str | None, typer.Option(
    "--price-list", help="Price list id to sell at (see `manxue prices`).", show_default=False)]
EfficiencyOpt = Annotated[float | None, typer.Option(
    min=0.001, max=1.0, show_default=False,
    help="Share of the roofline reached, for every throughput (1.0 = the upper bound). "
         "\\[default: calibrated on published measurements, by regime]")]
EngineOpt = Annotated[str | None, typer.Option(
    help="Serving engine, for the calibration: vllm, sglang, llama.cpp, ktransformers, rkllm, … "
         "\\[default: vllm on GPUs, llama.cpp on CPUs and SoCs]", show_default=False)]
UserSpeedOpt = Annotated[float, typer.Option(
    "--user-speed", min=0.0,
    help="Default decode batch: the largest that keeps each sequence at this many tokens/s "
         "(0: the most that fit).")]
CatalogOpt = Annotated[Path | None, typer.Option(
    "--catalog", help="TOML file with your own \\[\\[model]] / \\[\\[hardware]] entries.",
    show_default=False)]
PricesOpt = Annotated[Path | None, typer.Option(
    "--prices", help="TOML file with your own price lists (like \\[billing] price_lists).",
    show_default=False)]
HitRateOpt = Annotated[float, typer.Option(
    "--hit-rate", min=0.0, max=1.0, show_default=False,
    help="Share of input tokens that are cache hits. \\[default: 342/608, DeepSeek's published day]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def user_price_lists(path: Path | None) -> dict[str, PriceList] | None:
    return load_price_lists(path) if path else None
