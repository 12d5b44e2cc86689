"""How well `manxue verify` tells honest endpoints from substitutes, at a fixed request budget.

    python benchmarks/verify_power.py --runs 40 --honest-runs 150      # writes docs/benchmarks/verify.md
    python benchmarks/verify_power.py --calibrate --trials 60          # capability priors (TOML)

Everything runs here, from real parts (manxue.verify.testbench): a gateway serving
SmolLM2-135M-Instruct through the embedded engine as the reference; suspects: the same file
(honest control), the same weights requantized to Q2_K, Gemma-3-270M behind the same claim, the
honest model behind a proxy that adds 16 prompt tokens per request, and the Q2_K model behind a
proxy that hides logprobs; plus upstream stand-ins whose usage is counted with the DeepSeek,
Qwen2.5 and Llama-3 tokenizers for the fingerprint. Each run is a full audit with its own seed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from manxue.engine.default_model import default_model_path
from manxue.server.app import build_app
from manxue.settings import settings_from_dict
from manxue.testing.loopback import LoopbackServer
from manxue.verify import AuditConfig, run_audit
from manxue.verify import testbench as tb
from manxue.verify.audit import DIST_PROMPTS
from manxue.verify.catalog import LEVELS
from manxue.verify.checks.base import CheckOptions
from manxue.verify.client import Endpoint
from manxue.verify.probes import generate

CLAIM = "smollm2-135m-instruct"
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


@dataclass
class Bench:
    gateway: LoopbackServer
    proxies: dict[str, LoopbackServer]
    standins: dict[str, LoopbackServer]

    def suspects(self, text_budget: int) -> list[Suspect]:
        g, hidden = self.gateway.url, self.proxies["nologprobs"].url
        text = {"checks": ("distribution",), "budget_requests": text_budget,
                "options": CheckOptions(dist_samples=max(2, text_budget // DIST_PROMPTS))}
        return [
            Suspect("honest", g, "honest", honest=True),
            Suspect("honest, second engine", g, "honest-copy", honest=True),
            Suspect("requant-q2k", g, "requant"),
            Suspect("gemma-3-270m", g, "gemma"),
            Suspect(f"padding +{PAD}", self.proxies["padding"].url, "honest"),
            Suspect("requant-q2k, logprobs hidden", hidden, "requant"),
            Suspect(f"requant-q2k, logprobs hidden, distribution only, {text_budget} requests",
                    hidden, "requant", extra=text, share=0.5),
            Suspect(f"honest second engine, logprobs hidden, distribution only, {text_budget} "
                    "requests", hidden, "honest-copy", extra=text, share=0.5),
        ]

    def stop(self) -> None:
        for s in [*self.standins.values(), *self.proxies.values(), self.gateway]:
            s.stop()


def start_bench(work: Path) -> Bench:
    smol = default_model_path()
    q2k = tb.requantize(smol, work / "smollm2-q2_k.gguf")
    copy = work / "smollm2-copy.gguf"
    shutil.copyfile(smol, copy)
    deployments = tb.bench_deployments(smol, q2k, tb.gemma_path(), smollm2_copy=copy)
    settings = settings_from_dict({"deployments": deployments, "data_dir": str(work)})
    gw = LoopbackServer(build_app(settings)).start()
    proxies = {"padding": LoopbackServer(tb.padding_proxy(gw.url, PAD)).start(),
               "nologprobs": LoopbackServer(tb.padding_proxy(gw.url, 0, hide_logprobs=True)).start()}
    standins = {f: LoopbackServer(tb.usage_standin(f, reasoning=True)).start()
                for f in ("deepseek", "qwen2.5", "llama3")}
    return Bench(gw, proxies, standins)


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
        self.verdicts.append(r["verdict"])
        self.requests.append(r["requests"])
        self.tokens.append(r["tokens"])
        self.ref_requests.append(r["reference_requests"])
        self.ref_tokens.append(r["reference_tokens"])
        self.seconds.append(r["seconds"])
        for c in r["checks"]:
            if c["rejects_claim"]:
                self.rejected_by[c["name"]] = self.rejected_by.get(c["name"], 0) + 1

    def rate(self, verdict: str) -> float:
        return self.verdicts.count(verdict) / max(1, len(self.verdicts))


async def power(bench: Bench, args: Any, log: Any) -> dict[str, Tally]:
    out: dict[str, Tally] = {}
    for s in bench.suspects(args.text_budget):
        tally = out.setdefault(s.name, Tally())
        n = args.honest_runs if s.honest else max(1, round(args.runs * s.share))
        for seed in range(1, n + 1):
            kw: dict[str, Any] = {"budget_requests": args.budget, **s.extra}
            cfg = AuditConfig(base_url=s.url, model=s.model, claim=CLAIM, seed=seed,
                              reference_url=bench.gateway.url, reference_model="reference", **kw)
            r = await run_audit(cfg)
            tally.add(r)
            print(f"{s.name[:40]:40} seed {seed:4} {r['verdict']:13} {r['requests']:3} req "
                  f"{r['tokens']:5} tok {r['seconds']:5.1f} s", file=log, flush=True)
    return out


async def fingerprints(bench: Bench, runs: int, log: Any) -> dict[str, tuple[int, int, list[int]]]:
    """family → (identified exactly, runs, requests per run)."""
    out: dict[str, tuple[int, int, list[int]]] = {}
    for fam, srv in bench.standins.items():
        right, spent = 0, []
        for seed in range(1, runs + 1):
            cfg = AuditConfig(base_url=srv.url, model="deepseek-reasoner", claim="deepseek-r1",
                              budget_requests=3, seed=seed, checks=("tokenizer",))
            r = await run_audit(cfg)
            found = r["checks"][0]["evidence"].get("fits", [])
            fitting = [f["family"] for f in found if f["fits"]]
            right += fitting == [fam]
            spent.append(r["requests"])
            print(f"standin {fam:10} seed {seed:4} fits {fitting}", file=log, flush=True)
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
        f"{wall / 60:.0f} min in all. Command:",
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
    return "\n".join(lines + NOTES) + "\n"


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


NOTES = [
    "",
    "## Reading the numbers",
    "",
    "- **What catches what.** The Q2_K copy has SmolLM2's tokenizer, template and (within noise) "
    "its probe pass rates; only the distribution test sees it, through the logprobs of the first "
    "generated positions, which move by 0.5–1 nat (the honest noise between batches and cached "
    "prefixes of the engine is at most ~0.16 nat, under the 0.25 tolerance). Gemma is caught by "
    "the tokenizer (exact) and the distribution test; the padding proxy by the tokenizer's offset.",
    "- **The honest control** runs on the reference's own engine (`honest`) and on a second "
    "engine loading a copy of the file (`honest, second engine`: its own batches and caches). "
    "Both are on the same CPU as the reference; a faithful provider on other hardware adds "
    "numerical noise this bench does not have, which is what the logprob tolerance is for.",
    "- **Missed: no logprobs.** When the endpoint does not return logprobs the distribution test "
    "falls back to a kernel on the text of 4-token samples. With 2 samples per prompt (16 "
    "requests) it has almost no power against this Q2_K copy, and with 6 per prompt (48 "
    "requests, distribution test only) it catches a minority of runs. The shifts are real but "
    "small relative to sampling noise at temperature 1; published two-sample tests of this kind "
    "(Model Equality Testing, ICLR 2025) use ~10 samples per prompt over many prompts. Such "
    "audits end `inconclusive`, never `authentic` (a text-only pass does not count as evidence "
    "of authenticity), so the miss is a lack of evidence, not a false acquittal.",
    "- **This Q2_K is mild.** SmolLM2's 576-wide rows are not multiples of 256, so llama.cpp "
    "falls back to Q4_0 for 180 of 272 tensors: 5.14 bits per weight against the original's "
    "5.74. A true 2-bit quantization of a large model moves logprobs more.",
    "- **Time** is the CPU engine's on two cores shared with other work (one thread per engine); "
    "it says nothing about the verifier's own cost, which is a few milliseconds per audit "
    "besides the requests.",
]


async def main_async(args: Any) -> str | None:
    """Run; returns the report text (None when calibrating)."""
    logging.getLogger("manxue.engine.llama").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="verify-bench-"))
    bench = start_bench(work)
    try:
        if args.calibrate:
            for cid, (passes, tried) in (await calibrate(bench, args.trials)).items():
                print(f"# {cid}\npasses = {passes}\ntrials = {tried}")
            return None
        t0 = time.monotonic()
        fps = await fingerprints(bench, args.fingerprint_runs, sys.stderr)
        tallies = await power(bench, args, sys.stderr)
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
    ap.add_argument("--out", default="docs/benchmarks/verify.md")
    ap.add_argument("--notes", type=Path, default=None, help="text appended to the report")
    ap.add_argument("--calibrate", action="store_true", help="measure capability priors instead")
    ap.add_argument("--trials", type=int, default=60, help="probes per level when calibrating")
    args = ap.parse_args()
    text = asyncio.run(main_async(args))
    if text is not None:
        Path(args.out).write_text(text + (args.notes.read_text() if args.notes else ""))
        print(text)


if __name__ == "__main__":
    main()
