"""The audit without logprobs: the likelihood check against honest endpoints and substitutes.

    python benchmarks/verify_likelihood.py --runs 20 --honest-runs 30   # docs/benchmarks/verify-likelihood.md

Real parts only (manxue.testing.verify_bench): the reference's weights are the shipped
SmolLM2-135M-Instruct GGUF, loaded in-process to score answers; the audited endpoints offer no
logprobs. Rows: the honest model; an honest copy on its own engine set up otherwise (thread
count, batch sizes, attention kernel, no prefix cache: verify_bench.OTHER_HARDWARE); the Q2_K
requantization; an endpoint answering half its requests with the Q2_K copy; one sending
audit-looking requests to the genuine model and the rest to the Q2_K copy; and a false claim
(deepseek-r1) against SmolLM2 with the default checks and no reference; and two endpoints
that cannot be audited (a DeepSeek emulator refusing the key with 401, a port where nothing
listens), which must end in the verdict `error`. Each run is a full audit with its own seed
and a budget of --budget requests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import platform
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manxue.engine.default_model import default_model_path
from manxue.testing import verify_bench as tb
from manxue.testing.deepseek_emulator import DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer
from manxue.verify import AuditConfig, run_audit
from manxue.verify.scorer import EngineScorer, open_scorer

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import write_doc
from verify_power import NOTES_MARK, wilson

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks" / "verify-likelihood.md"
CLAIM = "smollm2-135m-instruct"


@dataclass
class Row:
    name: str
    url: str
    model: str
    honest: bool
    runs: int
    claim: str = CLAIM
    weights: bool = True
    api_key: str | None = None
    verdicts: list[str] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    shifts: list[float] = field(default_factory=list)
    answer_shifts: list[float] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)

    def rate(self, verdict: str) -> tuple[int, float, float, float]:
        k, n = self.verdicts.count(verdict), len(self.verdicts)
        lo, hi = wilson(k, n)
        return k, k / n if n else 0.0, lo, hi


async def audit(row: Row, seed: int, scorer: EngineScorer, budget: int) -> None:
    t0 = time.monotonic()
    cfg = AuditConfig(base_url=row.url, model=row.model, claim=row.claim, seed=seed,
                      budget_requests=budget, scorer=scorer if row.weights else None,
                      api_key=row.api_key)
    result = await run_audit(cfg)
    row.verdicts.append(result["verdict"])
    row.requests.append(int(result["requests"]))
    row.seconds.append(time.monotonic() - t0)
    lik = next((c for c in result["checks"] if c["name"] == "likelihood"), None)
    shift = lik["evidence"].get("detectable_shift") if lik else None
    if shift is not None and result["verdict"] == "authentic":
        row.shifts.append(float(shift))
        row.answer_shifts.append(float(lik["evidence"]["detectable_answer_shift"]))
    if result["verdict"] == "error":
        row.causes.append(str(result.get("reason", ""))[:110])
    print(f"{row.name:28} seed {seed:3} {result['verdict']:12} {row.requests[-1]:3} requests "
          f"{row.seconds[-1]:6.1f} s", flush=True)


def rows(bench: tb.Bench, runs: int, honest_runs: int, locked: str, closed: str) -> list[Row]:
    copy = bench.gateway.url
    return [
        Row("honest", bench.nologprobs.url, "honest", True, honest_runs),
        Row("honest, other engine setup", copy, "honest-copy", True, honest_runs),
        Row("Q2_K for everything", bench.nologprobs.url, "requant", False, runs),
        Row("Q2_K for half the requests", bench.mixed.url, "honest", False, runs),
        Row("Q2_K unless it looks like an audit", bench.aware.url, "honest", False, runs),
        Row("false claim deepseek-r1, no weights", bench.gateway.url, "honest", False,
            max(3, runs // 4), claim="deepseek-r1", weights=False),
        Row("wrong API key (401)", locked, "deepseek-chat", False, 3, api_key="sk-wrong"),
        Row("nothing listening", closed, "honest", False, 3),
    ]


def closed_port() -> int:
    """A loopback port where nothing listens (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render(table: list[Row], args: Any, minutes: float) -> list[str]:
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    lines = [
        "# Verify without logprobs: the likelihood check",
        "",
        f"Measured {when} on {platform.machine()} with 2 cores (shared), Python "
        f"{platform.python_version()}; {minutes:.0f} min in all. Command:",
        "",
        "```",
        f"python benchmarks/verify_likelihood.py --runs {args.runs} --honest-runs "
        f"{args.honest_runs} --budget {args.budget}",
        "```",
        "",
        f"Claim `{CLAIM}`; the reference's weights: the shipped SmolLM2-135M-Instruct GGUF "
        "(Q4_1), scoring in-process; the audited endpoints return no logprobs; default checks "
        f"with the likelihood check; budget {args.budget} requests to the endpoint per audit; "
        "alpha 0.01; one seed per run.",
        "",
        "| endpoint | runs | `substituted` (95% interval) | `authentic` (95% interval) | other | "
        "requests / audit (median, max) | seconds / audit (median) | shift ruled out when authentic: "
        "per token; over answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        ks, ps, los, his = r.rate("substituted")
        ka, pa, loa, hia = r.rate("authentic")
        other = len(r.verdicts) - ks - ka
        shift = (f"{statistics.median(r.shifts):.3g} (max {max(r.shifts):.3g}); "
                 f"{statistics.median(r.answer_shifts):.3g} (max {max(r.answer_shifts):.3g})"
                 if r.shifts else "—")
        errors = r.verdicts.count("error")
        other_kinds = f"{other} (`error` {errors})" if r.causes else str(other)
        lines.append(
            f"| {r.name} | {len(r.verdicts)} | {ps:.0%} ({los:.0%}–{his:.0%}) | "
            f"{pa:.0%} ({loa:.0%}–{hia:.0%}) | {other_kinds} | {statistics.median(r.requests):.0f}, "
            f"{max(r.requests)} | {statistics.median(r.seconds):.1f} | {shift} |")
    lines += ["", "The shifts are the mean standardized excess surprise per token, and the mean "
              "over answers of each answer's mean (manxue.verify.surprise): a substitute moving "
              "either by that much or more would have been caught at this budget.", ""]
    for r in table:
        if r.causes:
            lines.append(f"- {r.name}: `error` — \"{r.causes[0]}…\"")
    lines.append("")
    return lines


async def main_async(args: Any) -> list[str]:
    logging.disable(logging.WARNING)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="manxue-lik-"))
    bench = tb.start_bench(work, second_engine=True, copy_options=tb.OTHER_HARDWARE)
    locked = LoopbackServer(DeepSeekEmulator(api_key="sk-the-right-key").app()).start()
    scorer = open_scorer(default_model_path())
    try:
        table = rows(bench, args.runs, args.honest_runs, locked.url,
                     f"http://127.0.0.1:{closed_port()}")
        for row in table:
            for seed in range(1, row.runs + 1):
                await audit(row, seed, scorer, args.budget)
    finally:
        scorer.close()
        locked.stop()
        bench.stop()
    return render(table, args, (time.monotonic() - t0) / 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="audits per substitute row")
    ap.add_argument("--honest-runs", type=int, default=30, help="audits per honest row")
    ap.add_argument("--budget", type=int, default=60, help="requests per audit")
    args = ap.parse_args()
    lines = asyncio.run(main_async(args))
    kept = OUT.read_text().partition(NOTES_MARK)[2] if OUT.exists() else ""
    write_doc(OUT, [*lines, NOTES_MARK + (kept or "\n")], ROOT)


if __name__ == "__main__":
    main()
