"""Check 4, distribution test against a reference: do the same prompts, sampled the same way,
come back from the same distribution? (manxue.verify.permutation, manxue.verify.kernels)"""

from __future__ import annotations

import asyncio
from typing import Any

from manxue.verify.budget import BudgetExhausted
from manxue.verify.checks.base import PASS, SKIP, CheckContext, CheckResult, clip
from manxue.verify.client import Endpoint, Reply
from manxue.verify.kernels import Sample, logprob_kernel, sample_from, text_kernel
from manxue.verify.open_prompts import open_prompts
from manxue.verify.permutation import two_sample_test

NAME, TITLE = "distribution", "Distribution test against the reference"
MEANING = ("Same prompts to both endpoints, several samples each at a fixed temperature; "
           "statistic: the sum over prompts of MMD² between the two sets of samples (kernel on "
           "per-position logprobs when both expose them, else on the text). p-value from "
           "permuting samples between the endpoints within each prompt; small p = the endpoint "
           "samples from a different distribution than the reference.")
_MIN_PROMPTS = 3
_MAX_PROMPTS = 12


async def run(ctx: CheckContext) -> CheckResult:
    if ctx.reference is None:
        return CheckResult.skipped(NAME, TITLE, "no reference endpoint (--reference-url / "
                                   "--reference-model)", MEANING)
    per = ctx.options.dist_samples
    count = min(_MAX_PROMPTS, ctx.requests // per)
    if count < _MIN_PROMPTS:
        return CheckResult.skipped(NAME, TITLE, f"the request budget leaves room for {count} "
                                   f"prompts; the test needs {_MIN_PROMPTS}", MEANING)
    prompts = open_prompts(ctx.seed, count)
    sides = await asyncio.gather(_collect(ctx, ctx.suspect, prompts, "s"),
                                 _collect(ctx, ctx.reference, prompts, "r"))
    (sus, sus_lp), (ref, ref_lp) = sides
    strata = [(sus[i], ref[i]) for i in range(count) if len(sus[i]) >= 2 and len(ref[i]) >= 2]
    use_lp = sus_lp and ref_lp
    evidence: dict[str, Any] = {
        "temperature": ctx.options.dist_temperature, "max_tokens": ctx.options.dist_max_tokens,
        "samples_per_prompt": per, "kernel": "logprobs" if use_lp else "text 3-grams",
        "logprob_tolerance": ctx.options.logprob_tolerance,
        "logprobs": {"endpoint": sus_lp, "reference": ref_lp},
        "prompts": [_shown(p, sus[i], ref[i]) for i, p in enumerate(prompts)],
    }
    if len(strata) < _MIN_PROMPTS:
        return CheckResult(NAME, TITLE, SKIP, f"only {len(strata)} prompts got two answers from "
                           "both endpoints", MEANING, counts=False, evidence=evidence)
    tol = ctx.options.logprob_tolerance

    def kernel(a: Sample, b: Sample) -> float:
        if use_lp and a.has_logprobs and b.has_logprobs:
            return logprob_kernel(a, b, tol)
        return text_kernel(a, b)

    result = await asyncio.to_thread(two_sample_test, strata, kernel,
                                     permutations=ctx.options.permutations, seed=ctx.seed)
    evidence.update(per_prompt_mmd2=[round(v, 6) for v in result.per_stratum],
                    permutations=ctx.options.permutations, resolution=result.resolution)
    summary = (f"MMD² {result.statistic:.4f} over {len(strata)} prompts "
               f"({evidence['kernel']} kernel), permutation p = {result.p_value:.4g}")
    return CheckResult(NAME, TITLE, PASS, summary, MEANING, p_value=result.p_value,
                       statistic=result.statistic, evidence=evidence)


async def _collect(ctx: CheckContext, ep: Endpoint, prompts: list[str], tag: str
                   ) -> tuple[list[list[Sample]], bool]:
    """Samples per prompt from one endpoint; the first request also finds out whether the
    endpoint accepts `logprobs` (one that refuses it is asked again without)."""
    per = ctx.options.dist_samples
    # sample j of every prompt before sample j + 1 of any: one prompt's samples from one side
    # are never sent together, so they never share a batch (which would correlate their noise)
    jobs = [(i, j) for j in range(per) for i in range(len(prompts))]
    out: list[list[Sample]] = [[] for _ in prompts]
    first = await _ask(ctx, ep, prompts, jobs[0], tag, logprobs=True)
    use_lp = first is not None and first.ok and first.logprobs is not None
    if first is not None and not first.ok and first.status in (400, 422):
        first = await _ask(ctx, ep, prompts, jobs[0], tag, logprobs=False)
    replies = [first, *await asyncio.gather(*(_ask(ctx, ep, prompts, job, tag, logprobs=use_lp)
                                              for job in jobs[1:]))]
    for (i, _), reply in zip(jobs, replies, strict=True):
        if reply is not None and reply.ok:
            text = reply.reasoning + reply.content
            out[i].append(sample_from(text, reply.logprobs if use_lp else None))
    return out, use_lp


async def _ask(ctx: CheckContext, ep: Endpoint, prompts: list[str], job: tuple[int, int],
               tag: str, *, logprobs: bool) -> Reply | None:
    i, j = job
    o = ctx.options
    body: dict[str, Any] = {"messages": [{"role": "user", "content": prompts[i]}],
                            "max_tokens": o.dist_max_tokens, "temperature": o.dist_temperature,
                            "seed": _seed(ctx.seed, tag, i, j)}
    if logprobs:
        body.update(logprobs=True, top_logprobs=o.dist_top_logprobs)
    try:
        return await ep.chat(NAME, body)
    except BudgetExhausted:
        return None


def _seed(seed: int, tag: str, i: int, j: int) -> int:
    return (seed * 1_000_003 + (0 if tag == "s" else 500_000) + i * 1000 + j) % (2**31)


def _shown(prompt: str, sus: list[Sample], ref: list[Sample]) -> dict[str, Any]:
    def first_step(samples: list[Sample]) -> dict[str, float] | None:
        for s in samples:
            if s.steps:
                return {k: round(v, 4) for k, v in sorted(s.steps[0].items(), key=lambda kv: -kv[1])}
        return None

    return {"prompt": prompt, "endpoint": [clip(s.text, 120) for s in sus],
            "reference": [clip(s.text, 120) for s in ref],
            "endpoint_first_logprobs": first_step(sus), "reference_first_logprobs": first_step(ref)}
