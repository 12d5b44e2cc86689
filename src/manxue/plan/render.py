"""Readable reports (rich tables) for `manxue plan`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from manxue.plan.calibration import CalibrationRow
from manxue.plan.catalog import Catalog


def gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def num(x: float | int | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def usd(x: Decimal | float | None, digits: int = 4) -> str:
    return "—" if x is None else f"${float(x):,.{digits}f}"


def _table(title: str, *columns: str) -> Table:
    t = Table(title=title, title_justify="left", show_header=bool(columns))
    for i, c in enumerate(columns or ("", "")):
        t.add_column(c, justify="right" if i else "left")
    return t


def render_plan(r: dict[str, Any], console: Console) -> None:
    m, hw = r["model"], r["hardware"]
    unit = hw["unit"]
    where = (f"{r['gpus']} × {hw['name']} ({r['nodes']} node(s))" if unit == "GPU"
             else f"{r['gpus']} {unit}(s): {hw['name']}")
    head = _table(f"{m['name']} on {where}, {r['precision']} weights, context {r['context']:,}")
    mem = [("weights", gb(r["weights_bytes"])), ("overhead allowance", gb(r["overhead_bytes"])),
           ("KV cache budget", gb(r["kv_budget_bytes"])), ("total memory", gb(r["memory_bytes"])),
           ("KV cache per token", f"{r['kv_bytes_per_token']:,} B ({r['kv_dtype']})"),
           ("KV cache per sequence", gb(r["kv_bytes_per_sequence"])),
           ("fits", "yes" if r["fits"] else "[red]no[/red]"),
           ("max concurrent sequences", num(r["max_concurrent_sequences"])),
           ("smallest deployment that fits", f"{r['min_gpus_to_fit']} {unit}(s)"
            + (f" ({r['min_nodes_to_fit']} node(s))" if unit == "GPU" else ""))]
    for k, v in mem:
        head.add_row(k, v)
    console.print(head)
    if not r["fits"]:
        console.print("[red]does not fit:[/red] raise --gpus, lower --context or use a smaller "
                      "--precision")
        return
    t = r["throughput"]
    tp = _table(f"Throughput, tokens/s ({t['basis']}, {t['engine']})", "", "expected",
                "low – high", f"per {unit}", "bound")

    def row(label: str, key: str, digits: int = 0, per_unit: bool = False) -> None:
        v = t[key]
        tp.add_row(label, num(v["value"], digits), f"{num(v['low'], digits)} – "
                   f"{num(v['high'], digits)}", num(v["value"] / r["gpus"]) if per_unit else "",
                   num(t["bound"][key], digits) if key in t["bound"] else "")

    row(f"decode, batch {r['decode_batch']:,} ({r['decode_bound']}-bound)", "decode_tokens_per_s",
        per_unit=True)
    row("decode, per sequence at that batch", "decode_tokens_per_s_per_sequence", 1)
    row("decode, one sequence alone", "single_sequence_tokens_per_s", 1)
    row("prefill", "prefill_tokens_per_s", per_unit=True)
    console.print(tp)
    if not t["batch_meets_target"]:
        console.print(f"[yellow]no batch keeps {t['per_user_speed_target']:g} tok/s per user "
                      "here: batch 1 shown (lower --user-speed, or use faster hardware)[/yellow]")
    cost = _table(f"Cost at ${float(r['gpu_hour_usd']):g}/{unit}-hour, utilisation "
                  f"{r['utilisation']:.0%}: ${float(r['cost_usd_per_hour']):,.2f}/hour",
                  "per 1M tokens", "USD")
    cost.add_row("output", usd(r["usd_per_million_output_tokens"]))
    cost.add_row("input, cache miss", usd(r["usd_per_million_input_miss_tokens"]))
    cost.add_row("input, cache hit", usd(r["usd_per_million_input_hit_tokens"], 6))
    cost.add_row("output, one sequence alone", usd(r["usd_per_million_output_tokens_single_sequence"]))
    console.print(cost)
    if "price_list" in r and "unit_prices" in r["price_list"]:
        render_price_block(r["price_list"], console)


def render_launch(launch: dict[str, Any], console: Console) -> None:
    console.print(f"[bold]Launch with {launch['engine']}[/bold]: {launch['nodes']} node(s) × "
                  f"{launch['gpus_per_node']} GPUs, tp {launch['tensor_parallel']}, pp "
                  f"{launch['pipeline_parallel']}"
                  + (", expert parallel" if launch["expert_parallel"] else ""))
    for node in launch["commands"]:
        for note in node["notes"]:
            console.print(f"note: {note}", soft_wrap=True, markup=False, highlight=False)
        console.print(f"node {node['node_rank']}:", soft_wrap=True)
        console.print(f"  {node['command']}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"then {launch['then']}", soft_wrap=True, markup=False, highlight=False)


def render_price_block(p: dict[str, Any], console: Console) -> None:
    u = p["unit_prices"]
    t = _table(f"Selling at {p['id']} ({p['model']}: {u['hit']} / {u['miss']} / {u['output']} "
               f"{u['currency']} per 1M hit / miss / output)")
    margin = p["cost_profit_margin_at_capacity"]
    t.add_row("traffic mix", f"{p['mix']['input_per_output']:.2f} input per output token, "
                             f"{p['mix']['cache_hit_rate']:.1%} cache hits")
    t.add_row("revenue per hour at capacity", usd(p["revenue_usd_per_hour_at_capacity"], 2))
    t.add_row("cost per hour", usd(p["cost_usd_per_hour"], 2))
    ends = p.get("cost_profit_margin_range", {})
    span = (f" (range {float(ends['low']):.0%} – {float(ends['high']):.0%})"
            if ends.get("low") is not None and ends.get("high") is not None else "")
    t.add_row("cost-profit margin", "—" if margin is None else f"{float(margin):.0%}{span}")
    t.add_row("break-even price", "—" if p["break_even_fraction_of_list_price"] is None
              else f"{float(p['break_even_fraction_of_list_price']):.1%} of list")
    console.print(t)


def render_day(d: dict[str, Any], console: Console) -> None:
    t = _table("DeepSeek V3/R1 inference, 2025-02-27 12:00 → 02-28 12:00 (UTC+8)")
    tok = d["tokens"]
    rec = d["reconciliation"]
    rows = [
        ("cost", f"{d['nodes_average']} nodes × {d['gpus_per_node']} GPUs × {d['hours']} h × "
                 f"${d['gpu_hour_usd']} = {usd(d['cost_usd'], 0)}"),
        ("input tokens", f"{tok['input'] / 1e9:,.3f}B, of which {tok['cache_hit'] / 1e9:,.3f}B "
                         f"cache hits ({rec['implied_cache_hit_share_percent']}%)"),
        ("output tokens", f"{tok['output'] / 1e9:,.0f}B"),
        ("prices", f"{d['price_list']}: {d['unit_prices_usd']['hit']} / "
                   f"{d['unit_prices_usd']['miss']} / {d['unit_prices_usd']['output']} USD per 1M"),
        ("revenue", f"{usd(d['revenue_usd'], 2)} (published {usd(d['published']['revenue_usd'], 0)})"),
        ("cost-profit margin", f"{d['cost_profit_margin']:.4f} = {d['cost_profit_margin_percent']}% "
                               f"(published {d['published']['cost_profit_margin_percent']}%)"),
        ("at the rounded published counts", f"{usd(rec['revenue_usd_at_published_rounded_counts'], 2)}"
                                            f" (342B hits, 266B misses)"),
        ("if the off-peak discount applied", usd(
            rec["revenue_usd_if_offpeak_discount_applied_to_flat_traffic"], 2)),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)


def render_derived_day(d: dict[str, Any], console: Console) -> None:
    t = _table("DeepSeek's day derived from calibrated throughputs (its own rows left out)",
               "line", "derived", "published", "gap", "how")
    for line in d["lines"]:
        t.add_row(line["line"], f"{line['derived']:,}", f"{line['published']:,}",
                  f"{line['gap_percent']:+.1f}%", line["note"])
    console.print(t)
    ok = d["within_25_percent"]
    console.print(f"within ±25%: nodes {'yes' if ok['nodes'] else 'NO'}, cost "
                  f"{'yes' if ok['cost'] else 'NO'}, margin {'yes' if ok['margin'] else 'NO'}; "
                  f"prefill efficiency {d['efficiency']['prefill']['efficiency']:.3f} from "
                  f"{', '.join(d['efficiency']['prefill']['learned_from'])}; decode "
                  f"{d['efficiency']['decode']['efficiency']:.3f} from "
                  f"{', '.join(d['efficiency']['decode']['learned_from'])}")


def render_build_vs_buy(b: dict[str, Any], console: Console) -> None:
    n = b["need_units"]
    p = b.get("traffic_profile")
    if p:
        ratio = "—" if p["peak_to_trough"] is None else f"{p['peak_to_trough']:.1f}"
        console.print(f"traffic from the ledger, {p['from'][:16]} → {p['to'][:16]} UTC: "
                      f"{p['input_tokens']:,} input tokens ({p['cache_hit_share']:.1%} cache "
                      f"hits), {p['output_tokens']:,} output; peak / trough hour {ratio}"
                      + (f"; priced as of {p['priced_as_of'][:10]}" if "priced_as_of" in p else ""))
    console.print(f"{b['hours']} hours of traffic, scaled to a {b['month_hours']}-hour month; one unit "
                  f"= {b['unit']['gpus']} × {b['unit']['hardware']} at "
                  f"${float(b['unit']['usd_per_hour']):,.2f}/h; need per hour: peak {n['peak']:.2f}, "
                  f"mean {n['mean']:.2f}, trough {n['trough']:.2f} units")
    t = _table(f"Monthly cost vs {b['price_list']} ({b['model']})", "option", "GPUs",
               "self-host", "cloud", "total", "to cloud", "utilisation")
    for o in b["options"]:
        mark = " ◀ cheapest" if o["name"] == b["cheapest"] else ""
        t.add_row(o["name"] + mark, str(o["gpus"]), usd(o["self_host_usd"], 0), usd(o["cloud_usd"], 0),
                  usd(o["monthly_usd"], 0), f"{o['cloud_token_share']:.1%}",
                  "—" if o["utilisation"] is None else f"{o['utilisation']:.0%}")
    console.print(t)


def render_calibration(rows: list[CalibrationRow], loo: list[Any], summary: dict[str, float],
                       console: Console) -> None:
    t = _table("Published measurements, the roofline, and each predicted from the others",
               "anchor", "published", "roofline", "ratio", "leave-one-out", "off by")
    for r, p in zip(rows, loo, strict=True):
        t.add_row(r.anchor.label, num(r.anchor.published, 2), num(r.estimate, 1),
                  f"{r.ratio:.2f}", num(p.predicted, 1), f"{p.factor:.2f}×")
    console.print(t)
    console.print(f"leave-one-out over {summary['rows']:.0f} rows: median error "
                  f"{summary['median_error']:.0%}, worst {summary['worst_factor']:.2f}×")


def render_measure(m: dict[str, Any], console: Console) -> None:
    hw = m["hardware"]
    console.print(f"{m['model_name']} on {hw['name']}: {hw['bandwidth_tbs'] * 1000:,.1f} GB/s, "
                  f"{hw['vector_tflops'] * 1000:,.0f} GFLOP/s float32, {m['threads']} threads")
    t = _table("Measured vs predicted (tokens/s)", "", "measured", "predicted", "low – high",
               "bound", "measured / predicted")
    for r in m["rows"]:
        label = "prefill" if r["phase"] == "prefill" else f"decode, batch {r['batch']}"
        ratio = r["measured_over_predicted"]
        t.add_row(label, num(r["measured_tokens_per_s"], 1), num(r["predicted_tokens_per_s"], 1),
                  f"{num(r['predicted_low'], 1)} – {num(r['predicted_high'], 1)}",
                  num(r["bound_tokens_per_s"], 1), "—" if ratio is None else f"{ratio:.2f}")
    console.print(t)
    if "saved" in m:
        console.print(f"stored {m['saved']['rows']} calibration row(s) in {m['saved']['file']}")


def render_models(catalog: Catalog, console: Console) -> None:
    t = _table("Models", "id", "params total / active", "attention", "KV B/token (BF16)", "native")
    from manxue.plan.memory import kv_bytes_per_token

    for m in catalog.models.values():
        kv = f"{kv_bytes_per_token(m):,}" if m.attention and m.layers else "not published"
        t.add_row(m.id, f"{m.params_total / 1e9:,.1f}B / {m.params_active / 1e9:,.1f}B",
                  m.attention.kind if m.attention else "—", kv, m.native_precision)
    console.print(t)


def render_hardware(catalog: Catalog, console: Console) -> None:
    t = _table("Hardware", "id", "memory", "bandwidth", "BF16 / FP8 / INT8 TFLOP/s", "interconnect")
    for h in catalog.hardware.values():
        t.add_row(h.id, f"{h.memory_gb:g} GB", f"{h.bandwidth_tbs:g} TB/s",
                  f"{h.bf16_tflops:g} / {num(h.fp8_tflops)} / {num(h.int8_tops)}", h.interconnect)
    console.print(t)
