"""How well `manxue verify` tells honest endpoints from substitutes, at a fixed request budget.

    python benchmarks/verify_power.py --runs 40 --honest-runs 150      # writes docs/benchmarks/verify.md
    python benchmarks/verify_power.py --calibrate --trials 60          # capability priors (TOML)

Everything runs here, from real parts (manxue.testing.verify_bench): a gateway serving
SmolLM2-135M-Instruct through the embedded engine as the reference; suspects: the same file
(honest control), the same weights requantized to Q2_K, Gemma-3-270M behind the same claim, the
honest model behind a proxy that adds 16 prompt tokens per request, and the Q2_K model behind a
proxy that hides logprobs; plus upstream stand-ins whose usage is counted with the DeepSeek,
Qwen2.5 and Llama-3 tokenizers for the fingerprint. Each run is a full audit with its own seed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manxue.testing import verify_bench as tb
from manxue.testing.verify_bench import Bench
from manxue.verify import AuditConfig, run_audit
from manxue.verify.audit import DIST_PROMPTS
from manxue.verify.catalog import LEVELS
from manxue.verify.checks.base import CheckOptions
from manxue.verify.client import Endpoint
from manxue.verify.probes import generate

CLAIM = "smollm2-135m-instruct"
NOTES_MARK = "<!-- notes: written by hand, kept across runs -->"
PAD = 16


@dataclass
class Suspect:
    name: str
    url: str
    model: str
    honest: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    share: float = 1.0
    """Fraction of --runs spent on this row."""


def suspects(bench: Bench, text_budget: int) -> list[Suspect]:
    g, hidden = bench.gateway.url, bench.nologprobs.url
    text = {"checks": ("distribution",), "budget_requests": text_budget,
            "options": CheckOptions(dist_samples=max(2, text_budget // DIST_PROMPTS))}
    return [
        Suspect("honest", g, "honest", honest=True),
        Suspect("honest, second engine", g, "honest-copy", honest=True),
        Suspect("requant-q2k", g, "requant"),
        Suspect("gemma-3-270m", g, "gemma"),
        Suspect(f"padding +{PAD}", bench.padding.url, "honest"),
        Suspect("requant-q2k, logprobs hidden", hidden, "requant"),
        Suspect(f"requant-q2k, logprobs hidden, distribution only, {text_budget} requests",
                hidden, "requant", extra=text, share=0.5),
        Suspect(f"honest second engine, logprobs hidden, distribution only, {text_budget} "
                "requests", hidden, "honest-copy", extra=text, share=0.5),
    ]


@dataclass
class Tally:
    verdicts: list[str] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    ref_requests: list[int] = field(default_factory=list)
    ref_tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    rejected_by: dict[str, int] = field(default_factory=dict)

    def add(self, r: dict[str, Any]) -> None:
        """`r`: a run's summary (see summary())."""
        self.verdicts.append(r["verdict"])
        self.requests.append(r["requests"])
        self.tokens.append(r["tokens"])
        self.ref_requests.append(r["reference_requests"])
        self.ref_tokens.append(r["reference_tokens"])
        self.seconds.append(r["seconds"])
        for name in r["rejected"]:
            self.rejected_by[name] = self.rejected_by.get(name, 0) + 1

    def rate(self, verdict: str) -> float:
        return self.verdicts.count(verdict) / max(1, len(self.verdicts))


class Journal:
    """Each run's summary as a JSON line in `path`: a rerun skips the runs already there."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                self.done[row["key"]] = row

    async def run(self, key: str, cfg: AuditConfig, log: Any) -> dict[str, Any]:
        if key in self.done:
            return self.done[key]
        r = await run_audit(cfg)
        row = summary(key, r)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps(row) + "\n")
        print(f"{key:60} {r['verdict']:13} {r['requests']:3} req {r['tokens']:5} tok "
              f"{r['seconds']:5.1f} s", file=log, flush=True)
        return row


def summary(key: str, r: dict[str, Any]) -> dict[str, Any]:
    fits = [f["family"] for c in r["checks"] for f in c["evidence"].get("fits", []) if f["fits"]]
    return {"key": key, "verdict": r["verdict"], "requests": r["requests"], "tokens": r["tokens"],
            "reference_requests": r["reference_requests"], "reference_tokens": r["reference_tokens"],
            "seconds": r["seconds"], "rejected": [c["name"] for c in r["checks"] if c["rejects_claim"]],
            "fits": fits}


async def power(bench: Bench, args: Any, journal: Journal) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for s in suspects(bench, args.text_budget):
        tally = out.setdefault(s.name, Tally())
        n = args.honest_runs if s.honest else max(1, round(args.runs * s.share))
        for seed in range(1, n + 1):
            kw: dict[str, Any] = {"budget_requests": args.budget, **s.extra}
            cfg = AuditConfig(base_url=s.url, model=s.model, claim=CLAIM, seed=seed,
                              reference_url=bench.gateway.url, reference_model="reference", **kw)
            tally.add(await journal.run(f"{s.name} | seed {seed}", cfg, sys.stderr))
    return out


async def fingerprints(bench: Bench, runs: int, journal: Journal
                       ) -> dict[str, tuple[int, int, list[int]]]:
    """family → (identified exactly, runs, requests per run)."""
    out: dict[str, tuple[int, int, list[int]]] = {}
    for fam, srv in bench.standins.items():
        right, spent = 0, []
        for seed in range(1, runs + 1):
            cfg = AuditConfig(base_url=srv.url, model="deepseek-reasoner", claim="deepseek-r1",
                              budget_requests=3, seed=seed, checks=("tokenizer",))
            row = await journal.run(f"standin {fam} | seed {seed}", cfg, sys.stderr)
            right += row["fits"] == [fam]
            spent.append(row["requests"])
        out[fam] = (right, runs, spent)
    return out


async def calibrate(bench: Bench, trials: int) -> dict[str, tuple[list[int], list[int]]]:
    models = {"smollm2-135m-instruct": "honest", "smollm2-135m-instruct-q2k": "requant",
              "gemma-3-270m": "gemma"}
    out: dict[str, tuple[list[int], list[int]]] = {}
    probes = generate(10_000, trials * len(LEVELS))
    for cid, model in models.items():
        ep = Endpoint(bench.gateway.url, model)
        replies = await asyncio.gather(*(ep.chat("calibrate", {
            "messages": [{"role": "user", "content": p.prompt}], "max_tokens": 24,
            "temperature": 0}) for p in probes))
        await ep.close()
        passes = [sum(1 for p, r in zip(probes, replies, strict=True)
                      if p.level == lv and r.ok and p.grade(r.content)) for lv in LEVELS]
        tried = [sum(1 for p in probes if p.level == lv) for lv in LEVELS]
        out[cid] = (passes, tried)
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a rate of k in n."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean(xs: list[float] | list[int]) -> str:
    return f"{statistics.mean(xs):.1f}" if xs else "—"


def render(tallies: dict[str, Tally], fps: dict[str, tuple[int, int, list[int]]], args: Any,
           wall: float) -> str:
    lines = [
        "# Verify: detection power and false flags",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()} with {os.cpu_count()} "
        f"cores (shared with other work), Python {platform.python_version()}; "
        f"{wall / 60:.0f} min in all (wall time of the last, resumed, invocation when --state "
        "was used). Command:",
        "",
        "```",
        f"python benchmarks/verify_power.py --runs {args.runs} --honest-runs {args.honest_runs} "
        f"--fingerprint-runs {args.fingerprint_runs} --budget {args.budget} "
        f"--text-budget {args.text_budget}",
        "```",
        "",
        f"Claim: `{CLAIM}`; reference: the embedded engine serving SmolLM2-135M-Instruct (Q4_1); "
        f"budget {args.budget} requests to the audited endpoint per audit; default checks "
        "(tokenizer, protocol, capability, distribution); alpha 0.01 with Holm–Bonferroni; one "
        "seed per run (1, 2, …).",
        "",
        "## Substitutions and the honest control",
        "",
        "| suspect | runs | flagged `substituted` (95% interval) | `authentic` | `inconclusive` | "
        "rejected by | requests / audit | tokens / audit | reference requests / tokens | "
        "seconds / audit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, t in tallies.items():
        by = ", ".join(f"{k} {v}" for k, v in sorted(t.rejected_by.items())) or "—"
        lo, hi = wilson(t.verdicts.count("substituted"), len(t.verdicts))
        lines.append(f"| {name} | {len(t.verdicts)} | {t.rate('substituted'):.1%} "
                     f"({lo:.1%}–{hi:.1%}) | "
                     f"{t.rate('authentic'):.1%} | {t.rate('inconclusive'):.1%} | {by} | "
                     f"{_mean(t.requests)} | {_mean(t.tokens)} | {_mean(t.ref_requests)} / "
                     f"{_mean(t.ref_tokens)} | {_mean(t.seconds)} |")
    lines += _targets(tallies, fps)
    lines += ["", "## Tokenizer fingerprint (3 requests, max_tokens 1)", "",
              "| upstream stand-in counted with | runs | family identified exactly | requests / run |",
              "|---|---|---|---|"]
    for fam, (right, runs, spent) in fps.items():
        lines.append(f"| {fam} | {runs} | {right}/{runs} ({right / max(1, runs):.0%}) | {_mean(spent)} |")
    return "\n".join(lines) + "\n"


def _targets(tallies: dict[str, Tally], fps: dict[str, tuple[int, int, list[int]]]) -> list[str]:
    right = sum(r for r, _, _ in fps.values())
    runs = sum(n for _, n, _ in fps.values())
    most = max((max(s) for _, _, s in fps.values() if s), default=0)
    honest = [t for name, t in tallies.items() if name.startswith("honest") and "hidden" not in name]
    flagged = sum(t.verdicts.count("substituted") for t in honest)
    audits = sum(len(t.verdicts) for t in honest)
    lo, hi = wilson(flagged, audits)
    out = ["", "## Against the targets", "",
           "| target | measured |", "|---|---|",
           f"| tokenizer family right 100% with ≤ 3 requests | {right}/{runs} stand-in runs, at most "
           f"{most} requests each |"]
    for name in ("requant-q2k", "gemma-3-270m", f"padding +{PAD}"):
        t = tallies.get(name)
        if t is not None:
            k, n = t.verdicts.count("substituted"), len(t.verdicts)
            a, b = wilson(k, n)
            out.append(f"| {name} detected ≥ 95% within ≤ 40 requests | {k}/{n} "
                       f"({k / max(1, n):.1%}; 95% interval {a:.1%}–{b:.1%}), "
                       f"{_mean(t.requests)} requests per audit |")
    out.append(f"| honest control flagged ≤ 2% | {flagged}/{audits} audits of the two honest rows "
               f"({flagged / max(1, audits):.1%}; 95% interval {lo:.1%}–{hi:.1%}) |")
    hidden = tallies.get("requant-q2k, logprobs hidden")
    if hidden is not None:
        k, n = hidden.verdicts.count("substituted"), len(hidden.verdicts)
        out.append(f"| (not a target) Q2_K copy behind an endpoint without logprobs | {k}/{n} detected "
                   f"({k / max(1, n):.1%}): missed, see below |")
    return out


async def main_async(args: Any) -> str | None:
    """Run; returns the report text (None when calibrating)."""
    logging.getLogger("manxue.engine.llama").setLevel(logging.ERROR)
    bench = tb.start_bench(Path(tempfile.mkdtemp(prefix="verify-bench-")), pad=PAD, second_engine=True)
    try:
        if args.calibrate:
            for cid, (passes, tried) in (await calibrate(bench, args.trials)).items():
                print(f"# {cid}\npasses = {passes}\ntrials = {tried}")
            return None
        t0 = time.monotonic()
        journal = Journal(args.state)
        fps = await fingerprints(bench, args.fingerprint_runs, journal)
        tallies = await power(bench, args, journal)
        return render(tallies, fps, args, time.monotonic() - t0)
    finally:
        bench.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=40, help="audits per substitution")
    ap.add_argument("--honest-runs", type=int, default=150, help="audits of the honest control")
    ap.add_argument("--fingerprint-runs", type=int, default=50, help="runs per tokenizer stand-in")
    ap.add_argument("--budget", type=int, default=40, help="requests per audit")
    ap.add_argument("--text-budget", type=int, default=48,
                    help="requests of the text-only distribution rows")
    ap.add_argument("--out", default="docs/benchmarks/verify.md",
                    help="the report; text after its notes marker is kept")
    ap.add_argument("--state", type=Path, default=None,
                    help="JSON-lines file of finished runs: a rerun resumes from it")
    ap.add_argument("--calibrate", action="store_true", help="measure capability priors instead")
    ap.add_argument("--trials", type=int, default=60, help="probes per level when calibrating")
    args = ap.parse_args()
    text = asyncio.run(main_async(args))
    if text is not None:
        out = Path(args.out)
        kept = out.read_text().partition(NOTES_MARK)[2] if out.exists() else ""
        out.write_text(text + "\n" + NOTES_MARK + (kept or "\n"))
        print(text)


if __name__ == "__main__":
    main()
