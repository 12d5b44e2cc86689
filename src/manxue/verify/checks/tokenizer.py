"""Check 1, tokenizer fingerprint: which tokenizer counts this endpoint's prompts, and does it
add tokens to every request? Three requests, max_tokens 1 (see manxue.verify.fingerprint)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from manxue.verify import fingerprint
from manxue.verify.catalog import Candidate
from manxue.verify.checks.base import FAIL, PASS, CheckContext, CheckResult, exchange
from manxue.verify.tokenizers import Family, families

NAME, TITLE = "tokenizer", "Tokenizer fingerprint"
MEANING = ("prompt_tokens reported for three crafted texts are compared with each offline "
           "tokenizer's exact counts. The right family leaves a constant difference (the chat "
           "template's overhead). Statistic: tokens per request above the claimed model's "
           "template overhead (0 = none); any mismatch or excess is exact evidence, p = 0.")


async def run(ctx: CheckContext) -> CheckResult:
    if ctx.requests < len(fingerprint.REPEATS):
        return CheckResult.skipped(NAME, TITLE, "the request budget leaves no room for it", MEANING)
    fams = await asyncio.to_thread(families)
    probe = await asyncio.to_thread(fingerprint.craft, random.Random(ctx.seed), fams)
    bodies = [{"messages": [{"role": "user", "content": c}], "max_tokens": 1, "temperature": 0}
              for c in probe.contents]
    replies = await asyncio.gather(*(ctx.suspect.chat(NAME, b) for b in bodies))
    shown = [exchange(b, r) for b, r in zip(bodies, replies, strict=True)]
    evidence: dict[str, Any] = {"unit": probe.unit, "repeats": list(fingerprint.REPEATS),
                                "exchanges": shown}
    observed = [_prompt_tokens(r.usage) for r in replies]
    if any(o is None for o in observed):
        return CheckResult.skipped(NAME, TITLE, "the endpoint reported no usage.prompt_tokens",
                                   MEANING, evidence)
    ys = [o for o in observed if o is not None]
    fits = fingerprint.fit(ys, probe.counts)
    matched = [f.family for f in fits if f.fits]
    evidence.update(observed=ys, fits=[{"family": f.family, "slope": round(f.slope, 4),
                                        "offsets": list(f.offsets), "fits": f.fits} for f in fits],
                    candidates={n: fams[n].source for n in probe.counts},
                    indistinguishable=[list(p) for p in probe.ambiguous])
    facts = {"families": matched}
    return _judge(ctx.claim, fams, probe, ys, fits, matched, evidence, facts)


def _judge(claim: Candidate | None, fams: dict[str, Family], probe: fingerprint.FingerprintTexts,
           ys: list[int], fits: list[fingerprint.Fit], matched: list[str],
           evidence: dict[str, Any], facts: dict[str, Any]) -> CheckResult:
    found = ", ".join(matched) or "none of the known families"
    if claim is None or claim.tokenizer not in fams:
        why = "no claim" if claim is None else f"no offline tokenizer for {claim.tokenizer}"
        return CheckResult(NAME, TITLE, PASS, f"tokenizer: {found} ({why} to compare with)",
                           MEANING, counts=False, evidence=evidence, facts=facts)
    want = claim.tokenizer
    if want not in matched:
        slope = next(f.slope for f in fits if f.family == want)
        # decisive when another known family counts every request exactly: the counts are not
        # noise, and they are not the claimed model's (no other check can undo that)
        return CheckResult(NAME, TITLE, FAIL, f"tokenizer is {found}, not {want} as {claim.id} uses "
                           f"(slope against {want}: {slope:.3f})", MEANING, p_value=0.0,
                           statistic=slope, evidence=evidence, facts=facts,
                           decisive=bool(matched))
    excess, expected = _excess(claim, fams[want], probe, ys)
    evidence["expected_overhead"] = expected
    if excess is None:
        return CheckResult(NAME, TITLE, PASS, f"tokenizer is {want}; template overhead unknown, "
                           "padding not checked", MEANING, p_value=1.0, evidence=evidence,
                           facts=facts)
    if excess > 0:
        return CheckResult(NAME, TITLE, FAIL, f"tokenizer is {want}, but every request is billed "
                           f"{excess} prompt tokens more than {claim.id}'s template adds",
                           MEANING, p_value=0.0, statistic=float(excess), evidence=evidence,
                           facts=facts)
    return CheckResult(NAME, TITLE, PASS, f"tokenizer is {want} as claimed; no padding",
                       MEANING, p_value=1.0, statistic=float(excess), evidence=evidence,
                       facts=facts)


def _excess(claim: Candidate, fam: Family, probe: fingerprint.FingerprintTexts, ys: list[int]
            ) -> tuple[int | None, Any]:
    """Tokens per request beyond the honest template overhead (None when it is unknown)."""
    if claim.overhead == "gguf" and fam.prompt_tokens is not None:
        exact = [fam.prompt_tokens(c) for c in probe.contents]
        if all(e is not None for e in exact):
            return min(y - e for y, e in zip(ys, exact, strict=True) if e is not None), \
                {"exact_prompt_tokens": exact}
    if isinstance(claim.overhead, tuple):
        low, high = claim.overhead
        offset = min(y - c for y, c in zip(ys, probe.counts[fam.name], strict=True))
        return max(0, offset - high), {"range": [low, high]}
    return None, None


def _prompt_tokens(usage: dict[str, Any] | None) -> int | None:
    v = usage.get("prompt_tokens") if usage else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None
