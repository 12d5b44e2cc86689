"""`manxue plan --plot out.png`: memory breakdown, decode throughput and output cost vs batch.

matplotlib is an optional extra (`pip install manxue[plot]`); everything else works without it.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from manxue.errors import InvalidParameters
from manxue.plan.capacity import Capacity
from manxue.plan.economics import usd_per_million
from manxue.plan.throughput import batch_curve


def write_plot(cap: Capacity, gpu_hour: Decimal, utilisation: float, path: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        raise InvalidParameters("--plot needs matplotlib: pip install 'manxue[plot]'") from None
    m, d = cap.memory, cap.deployment
    fig, (ax_mem, ax_tps, ax_cost) = plt.subplots(1, 3, figsize=(15, 4.5))
    fig.suptitle(f"{d.model.name} on {d.gpus} × {d.hw.name}, {cap.precision.name}, "
                 f"context {d.context:,} (roofline upper bounds)")
    parts = [("weights", m.weights_bytes), ("overhead", m.overhead_bytes),
             ("KV cache", m.kv_budget_bytes)]
    bottom = 0.0
    for label, value in parts:
        ax_mem.bar(["memory"], [value / 1e9], bottom=[bottom], label=f"{label} {value / 1e9:,.0f} GB")
        bottom += value / 1e9
    ax_mem.axhline(m.memory_bytes / 1e9, color="black", linestyle="--", linewidth=1,
                   label=f"installed {m.memory_bytes / 1e9:,.0f} GB")
    ax_mem.set_ylabel("GB")
    ax_mem.set_title("Memory")
    ax_mem.legend(fontsize=8)
    if m.max_concurrent_sequences >= 1:
        steps = batch_curve(cap.roofline, d.context, m.max_concurrent_sequences)
        batches = [s.batch for s in steps]
        ax_tps.plot(batches, [s.tokens_per_s for s in steps], marker="o", markersize=3)
        costs = [usd_per_million(s.tokens_per_s, d.gpus, gpu_hour, utilisation) for s in steps]
        ax_cost.plot(batches, [float(c) if c is not None else 0.0 for c in costs], marker="o",
                     markersize=3, color="tab:red")
    else:
        for ax in (ax_tps, ax_cost):
            ax.text(0.5, 0.5, "does not fit", ha="center", va="center", transform=ax.transAxes)
    ax_tps.set(xscale="log", xlabel="decode batch (sequences)", ylabel="output tokens/s",
               title="Decode throughput")
    ax_cost.set(xscale="log", yscale="log", xlabel="decode batch (sequences)",
                ylabel="USD per 1M output tokens",
                title=f"Output cost at ${float(gpu_hour):g}/GPU-hour")
    ax_cost.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"${v:g}"))
    ax_tps.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
    for ax in (ax_tps, ax_cost):
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
