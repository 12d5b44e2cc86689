"""From check results to one verdict: `authentic`, `substituted` or `inconclusive`.

1. The p-values of the checks that count (tokenizer, protocol identity items, distribution,
   and capability when its priors are measured) are corrected with Holm–Bonferroni at `alpha`
   (manxue.verify.holm): an honest endpoint is flagged with probability at most `alpha`.
2. Any rejected check → `substituted`.
3. Otherwise `authentic` when a check that could have told the claim from a substitute passed:
   the distribution test on logprobs with enough prompts to reject (measured power against a
   Q2_K requantization: docs/benchmarks/verify.md; on text alone its power at 16 requests is
   low, so a text-only pass does not make an audit authentic), or the tokenizer fingerprint
   matching the claim together with a posterior of at least DECISIVE (0.9) on the claim — which
   rules out the other catalog models, not a quantization of the claimed weights.
4. Otherwise `inconclusive` (e.g. no reference was given and the probes cannot separate the
   claim from its quantizations).
"""

from __future__ import annotations

from manxue.verify.checks.base import FAIL, PASS, SKIP, CheckResult
from manxue.verify.holm import holm

AUTHENTIC, SUBSTITUTED, INCONCLUSIVE = "authentic", "substituted", "inconclusive"
DECISIVE = 0.9


def decide(results: list[CheckResult], alpha: float, claim_id: str | None,
           post: dict[str, float] | None) -> tuple[str, str]:
    counted = {r.name: r.p_value for r in results
               if r.counts and r.status != SKIP and r.p_value is not None}
    decisions = holm(counted, alpha)
    for r in results:
        d = decisions.get(r.name)
        if d is not None:
            r.threshold, r.rejected = d.threshold, d.rejected
            if d.rejected:
                r.status = FAIL
    rejected = [r for r in results if r.rejected]
    if rejected:
        return SUBSTITUTED, "rejected by: " + "; ".join(f"{r.name} ({r.summary})" for r in rejected)
    if not counted:
        return INCONCLUSIVE, "no check could test the claim (unknown claim or everything skipped)"
    by_name = {r.name: r for r in results}
    dist = by_name.get("distribution")
    if dist is not None and dist.status == PASS and dist.threshold is not None \
            and dist.evidence.get("kernel") == "logprobs" \
            and dist.evidence.get("resolution", 1.0) <= dist.threshold:
        return AUTHENTIC, "no check rejected the claim and the distribution test matched the reference"
    tok = by_name.get("tokenizer")
    if tok is not None and tok.status == PASS and tok.counts and post and claim_id \
            and post.get(claim_id, 0.0) >= DECISIVE:
        return AUTHENTIC, (f"no check rejected the claim; tokenizer as claimed and posterior "
                           f"{post[claim_id]:.2f} on {claim_id} (without a reference, a "
                           "quantization of the same weights is not ruled out)")
    if dist is not None and dist.status == PASS and dist.evidence.get("kernel") != "logprobs":
        hint = ("the distribution test ran on text only (no logprobs from the endpoint or the "
                "reference), which has little power at this budget")
    else:
        hint = "give a reference endpoint for the distribution test"
    return INCONCLUSIVE, ("no check rejected the claim, but none could tell it from a close "
                          f"substitute: {hint}")
