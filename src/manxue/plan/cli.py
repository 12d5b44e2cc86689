"""`manxue plan`: will a model run on this hardware, how fast, at what cost, at what margin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from manxue.errors import ConfigError, ManxueError
from manxue.plan import render
from manxue.plan.calibrated import DEFAULT_USER_SPEED
from manxue.plan.catalog import load_catalog
from manxue.plan.cli_options import (
    CatalogOpt,
    ContextOpt,
    EfficiencyOpt,
    EngineOpt,
    GpuHourOpt,
    GpusOpt,
    HardwareOpt,
    HitRateOpt,
    JsonOpt,
    ModelOpt,
    PrecisionOpt,
    PriceListOpt,
    PricesOpt,
    UserSpeedOpt,
    parse_money,
    parse_time,
    user_price_lists,
)
from manxue.plan.report import (
    DEFAULT_HIT_RATE,
    DEFAULT_INPUT_PER_OUTPUT,
    PlanQuery,
    api_model_in,
    build_report,
    calibrated_for,
    jsonable,
)
from manxue.plan.specs import HardwareSpec, ModelSpec

PLAN_EXAMPLE = "manxue plan -m deepseek-r1 --hardware h800 --gpus 16 --price-list deepseek-r1-2025-02"

plan_app = typer.Typer(
    help="Plan a deployment: memory, KV cache, roofline throughput, token cost and margin.\n\n"
         f"Example: {PLAN_EXAMPLE}",
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (ManxueError, ConfigError) as exc:
        err.print(f"[red]error:[/red] {getattr(exc, 'message', None) or exc}")
        raise typer.Exit(2) from None


def _print_json(value: Any) -> None:
    typer.echo(orjson.dumps(jsonable(value), option=orjson.OPT_INDENT_2).decode())


@plan_app.callback(invoke_without_command=True)
def plan(
    ctx: typer.Context,
    model: ModelOpt = None,
    hardware: HardwareOpt = None,
    gpus: GpusOpt = 8,
    precision: PrecisionOpt = None,
    context: ContextOpt = 8192,
    gpu_hour: GpuHourOpt = "2.0",
    price_list: PriceListOpt = None,
    at: Annotated[str | None, typer.Option(
        help="Price at this time (ISO 8601), time-of-day windows applied. \\[default: list prices]",
        show_default=False)] = None,
    efficiency: EfficiencyOpt = None,
    engine: EngineOpt = None,
    user_speed: UserSpeedOpt = DEFAULT_USER_SPEED,
    utilisation: Annotated[float, typer.Option(min=0.001, max=1.0,
                                               help="Share of the hours the GPUs are busy.")] = 1.0,
    overhead: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Share of memory kept for activations and runtime.")] = 0.10,
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV cache values: bf16, fp16, fp8.")] = "bf16",
    kv_bytes_per_token: Annotated[int | None, typer.Option(
        min=1, help="Override the KV cache bytes per token (models without a published layout).",
        show_default=False)] = None,
    batch: Annotated[int | None, typer.Option(
        min=1, help="Decode batch. \\[default: the largest that keeps --user-speed and fits]",
        show_default=False)] = None,
    input_per_output: Annotated[float, typer.Option(
        min=0.0, help="Input tokens per output token, for revenue at a price list. "
        "\\[default: 608/168, DeepSeek's published day]", show_default=False)]
        = DEFAULT_INPUT_PER_OUTPUT,
    hit_rate: HitRateOpt = DEFAULT_HIT_RATE,
    catalog: CatalogOpt = None,
    prices: PricesOpt = None,
    as_json: JsonOpt = False,
    plot: Annotated[Path | None, typer.Option(
        help="Write charts (memory, decode throughput and cost vs batch) to this PNG.",
        show_default=False)] = None,
    launch: Annotated[str | None, typer.Option(
        "--launch", help="Also print the vllm or sglang command lines for this deployment, "
        "node by node.", show_default=False)] = None,
) -> None:
    """Plan a deployment: memory, KV cache, roofline throughput, token cost and margin.

    Example: manxue plan -m deepseek-r1 --hardware h800 --gpus 16 --price-list deepseek-r1-2025-02
    """
    if ctx.invoked_subcommand is not None:
        return
    if model is None and hardware is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()
    if model is None or hardware is None:
        err.print("[red]error:[/red] --model and --hardware are both required")
        raise typer.Exit(2)
    with _errors():
        cat = load_catalog(catalog)
        q = PlanQuery(model, hardware, gpus, precision, context, parse_money(gpu_hour), price_list,
                      efficiency, utilisation, overhead, kv_dtype, kv_bytes_per_token, batch,
                      input_per_output, hit_rate, parse_time(at), engine, user_speed)
        report = build_report(q, cat, price_lists=user_price_lists(prices))
        if launch is not None:
            from manxue.plan.launch import launch_plan

            report["launch"] = launch_plan(calibrated_for(q, cat).capacity, launch.lower())
        if plot is not None:
            from manxue.plan.plot import write_plot

            cap = calibrated_for(q, cat).capacity
            report["plot"] = str(write_plot(cap, q.gpu_hour, utilisation, plot))
    if as_json:
        _print_json(report)
        return
    render.render_plan(report, out)
    if "launch" in report:
        render.render_launch(report["launch"], out)
    out.print(f"[dim]Throughputs: {report['throughput']['basis']} (manxue plan calibration); "
              "--efficiency 1.0 shows the roofline bound.[/dim]")
    if plot is not None:
        out.print(f"charts written to {plot}")


@plan_app.command("deepseek-day")
def deepseek_day_cmd(
    derive: Annotated[bool, typer.Option(
        "--derive", help="Rebuild the day from calibrated throughputs (DeepSeek's own "
        "measurements left out): nodes, cost and margin next to the published ones.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """DeepSeek's published day (2025-02-27/28): $87,072 cost, $562,027 revenue, 545% margin.

    Example: manxue plan deepseek-day --derive
    """
    from manxue.plan.day import deepseek_day
    from manxue.plan.day_derive import derived_day

    with _errors():
        day = derived_day() if derive else deepseek_day()
    if as_json:
        _print_json(day)
    elif derive:
        render.render_derived_day(day, out)
    else:
        render.render_day(day, out)


@plan_app.command("build-vs-buy")
def build_vs_buy_cmd(
    traffic: Annotated[Path | None, typer.Option(
        help="CSV: time (or hour), input_tokens, output_tokens, optional cache_hit_tokens; one "
             "row per hour.",
        show_default=False)] = None,
    from_ledger: Annotated[bool, typer.Option(
        "--from-ledger", help="Read the hourly traffic from the gateway's usage ledger instead "
        "(the database of --config).")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar="MANXUE_CONFIG",
        help="With --from-ledger: the gateway's config file (its database_url). "
             "\\[default: the local database]", show_default=False)] = None,
    days: Annotated[float, typer.Option(
        min=0.05, help="With --from-ledger: how many days back to read.")] = 7.0,
    ledger_model: Annotated[list[str] | None, typer.Option(
        "--ledger-model", help="With --from-ledger: only requests for this model (repeatable). "
        "\\[default: every model]", show_default=False)] = None,
    model: ModelOpt = None,
    hardware: HardwareOpt = None,
    gpus: GpusOpt = 8,
    precision: PrecisionOpt = None,
    context: ContextOpt = 8192,
    gpu_hour: GpuHourOpt = "2.0",
    price_list: Annotated[str, typer.Option(
        "--price-list", help="Cloud API price list to compare with.")] = "deepseek-r1-2025-02",
    percentile: Annotated[list[float] | None, typer.Option(
        help="Hybrid: size self-hosting for this percentile of hourly need (repeatable). "
             "\\[default: 50 75 90 95]", show_default=False)] = None,
    start: Annotated[str | None, typer.Option(
        help="Time of hour 0 for an `hour` column (ISO 8601). \\[default: a Monday inside the list]",
        show_default=False)] = None,
    hit_rate: HitRateOpt = DEFAULT_HIT_RATE,
    efficiency: EfficiencyOpt = None,
    engine: EngineOpt = None,
    catalog: CatalogOpt = None,
    prices: PricesOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Monthly cost of a cloud API vs self-hosting for the peak vs a hybrid, for a traffic profile.

    Example: manxue plan build-vs-buy --from-ledger --config prod.toml -m deepseek-r1 --hardware h800 -n 16
    """
    from manxue.plan.build_vs_buy import DEFAULT_PERCENTILES, compare, default_start
    from manxue.plan.traffic import read_traffic
    from manxue.pricing import get_price_list

    if model is None or hardware is None:
        err.print("[red]error:[/red] --model and --hardware are both required")
        raise typer.Exit(2)
    if (traffic is None) == (not from_ledger):
        err.print("[red]error:[/red] give the traffic as --traffic FILE or --from-ledger, "
                  "not both" if traffic is not None else
                  "[red]error:[/red] give the traffic as --traffic FILE or --from-ledger")
        raise typer.Exit(2)
    profile: dict[str, Any] | None = None
    with _errors():
        cat = load_catalog(catalog)
        q = PlanQuery(model, hardware, gpus, precision, context, parse_money(gpu_hour),
                      efficiency=efficiency, hit_rate=hit_rate, engine=engine)
        cap = calibrated_for(q, cat).capacity
        plist = get_price_list(price_list, user_price_lists(prices))
        api_model = api_model_in(plist, cap.deployment.model)
        t0 = parse_time(start, "start") or default_start(plist, api_model)
        if traffic is not None:
            hours = read_traffic(traffic, t0, hit_rate)
        else:
            entries = plist.entries_for(api_model)
            hours, profile = _ledger_hours(config, days, tuple(ledger_model or ()), t0,
                                           lambda t: any(e.covers(t) for e in entries))
        result = compare(hours, cap, q.gpu_hour, plist, api_model,
                         tuple(percentile) if percentile else DEFAULT_PERCENTILES)
        if profile is not None:
            result["traffic_profile"] = profile
    if as_json:
        _print_json(result)
    else:
        render.render_build_vs_buy(result, out)


def _ledger_hours(config: Path | None, days: float, models: tuple[str, ...],
                  priced_from: datetime, priced: Callable[[datetime], bool]
                  ) -> tuple[list[Any], dict[str, Any]]:
    """The ledger's hourly traffic over the last `days`, moved by whole weeks into the price
    list's validity when the list does not price the ledger's own dates (weekday and hour of
    day, which time-of-day prices depend on, are kept)."""
    from datetime import UTC, timedelta

    from manxue.accounting.reports import hourly_tokens_at
    from manxue.plan.ledger_traffic import hours_from_sums, profile
    from manxue.plan.traffic import HourTraffic
    from manxue.settings import load_settings

    until = datetime.now(UTC)
    sums = hourly_tokens_at(load_settings(config).resolved_database_url(),
                            until - timedelta(days=days), until, models)
    hours = hours_from_sums(sums, f" for {', '.join(models)}" if models else "")
    found = profile(hours) | {"source": "ledger", "models": list(models) or "all"}
    if not (priced(hours[0].when) and priced(hours[-1].when)):
        weeks = (priced_from - hours[0].when) // timedelta(weeks=1) + 1
        hours = [HourTraffic(h.when + timedelta(weeks=weeks), h.usage) for h in hours]
        found["priced_as_of"] = hours[0].when.isoformat()
    return hours, found


def _listing(catalog: Path | None, as_json: bool, pick: Callable[[Any], Any],
             show: Callable[[Any, Console], None]) -> None:
    with _errors():
        cat = load_catalog(catalog)
    if as_json:
        _print_json([_spec_json(s) for s in pick(cat).values()])
    else:
        show(cat, out)


def _spec_json(spec: ModelSpec | HardwareSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(spec)


@plan_app.command("measure")
def measure_cmd(
    model: Annotated[Path | None, typer.Option(
        "--model", "-m", help="GGUF file to time. \\[default: the shipped SmolLM2-135M]",
        show_default=False)] = None,
    batches: Annotated[str, typer.Option(help="Decode batch sizes, comma-separated.")] = "1,4,8",
    tokens: Annotated[int, typer.Option(min=4, max=4096,
                                        help="Tokens each sequence generates.")] = 64,
    prompt: Annotated[int, typer.Option(min=16, max=32768,
                                        help="Prompt tokens for the prefill timing.")] = 512,
    threads: Annotated[int | None, typer.Option(
        min=1, help="CPU threads. \\[default: all]", show_default=False)] = None,
    hardware: Annotated[str | None, typer.Option(
        help="Catalog hardware to predict for. \\[default: this host, measured]",
        show_default=False)] = None,
    save: Annotated[Path | None, typer.Option(
        help="Store the measurements as calibration rows for this hardware in this TOML file; "
             "later plans on this machine learn from them. \\[default: not stored]",
        show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time the embedded engine here (prefill, decode at a few batches) against the prediction.

    Example: manxue plan measure --batches 1,4,8 --save ~/.local/share/manxue/plan-calibration.toml
    """
    from manxue.plan.measure import measure, save_points

    try:
        sizes = sorted({int(b) for b in batches.split(",") if b.strip()})
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1 or max(sizes) > 64:
        err.print("[red]error:[/red] --batches takes sizes from 1 to 64, e.g. 1,4,8")
        raise typer.Exit(2)
    with _errors():
        path = model or _shipped_model()
        hw = load_catalog(None).device(hardware) if hardware else None
        with err.status("measuring") as status:
            result = measure(path, sizes, prompt, tokens, threads, hw,
                             lambda text: status.update(f"measuring: {text}"))
        if save is not None:
            result["saved"] = {"file": str(save), "rows": save_points(save, result)}
    if as_json:
        _print_json(result)
    else:
        render.render_measure(result, out)


def _shipped_model() -> Path:
    from manxue.engine.default_model import default_model_path

    try:
        return default_model_path()
    except FileNotFoundError as exc:
        raise ConfigError(f"{exc}; or pass --model FILE") from None


@plan_app.command("models")
def models_cmd(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """The model catalog (with your --catalog entries).

    Example: manxue plan models --json
    """
    _listing(catalog, as_json, lambda c: c.models, render.render_models)


@plan_app.command("hardware")
def hardware_cmd(catalog: CatalogOpt = None, as_json: JsonOpt = False) -> None:
    """The hardware catalog (with your --catalog entries).

    Example: manxue plan hardware --catalog my-hardware.toml
    """
    _listing(catalog, as_json, lambda c: c.hardware, render.render_hardware)


@plan_app.command("calibration")
def calibration_cmd(as_json: JsonOpt = False) -> None:
    """Published measurements next to the roofline, and each predicted by the others.

    Example: manxue plan calibration
    """
    from manxue.plan.calibration import calibration
    from manxue.plan.efficiency import leave_one_out, loo_summary

    with _errors():
        rows = calibration()
        loo = leave_one_out(rows)
    if as_json:
        _print_json([r.as_dict() | {"loo_predicted": round(p.predicted, 2),
                                    "loo_error": round(p.error, 4), "loo_factor": round(p.factor, 3),
                                    "matched_on": list(p.matched_on),
                                    "learned_from": list(p.learned_from)}
                     for r, p in zip(rows, loo, strict=True)])
    else:
        render.render_calibration(rows, loo, loo_summary(loo), out)
