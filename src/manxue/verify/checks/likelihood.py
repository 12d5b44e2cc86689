"""Check: are the endpoint's answers as likely under the reference model as its own samples?

The endpoint gets ordinary questions with ordinary parameters (manxue.verify.user_prompts): no
logprobs, no seed, no tiny max_tokens, nothing an endpoint could use to spot an audit and send
it to the genuine model. The reference (a local GGUF of the claimed model) scores each answer
token by token, and manxue.verify.surprise turns the scores into two always-valid sequential
tests. Answers are judged as they arrive, and the check stops as soon as either test is
decisive: "substituted" when the answers are more surprising than the reference's own samples
could be, "consistent" when every substitute that shifts the surprise by the stated size is
ruled out.
"""

from __future__ import annotations

import asyncio
import math
from random import Random
from typing import Any

from manxue.errors import ManxueError
from manxue.verify.checks.base import FAIL, PASS, SKIP, CheckContext, CheckResult, clip
from manxue.verify.client import Reply
from manxue.verify.scorer import Scorer
from manxue.verify.surprise import ScoredAnswer, SurpriseTest
from manxue.verify.user_prompts import request_for, user_prompts

NAME, TITLE = "likelihood", "Answer likelihood under the reference model"
MEANING = ("Ordinary questions, ordinary parameters; the reference model (local weights of the "
           "claimed model) scores every token of each answer. A token sampled from the "
           "reference has an excess surprise (−log p − entropy) of mean 0; another model's "
           "tokens are more surprising. Evidence is an e-value: the audit stops when it "
           "reaches 1/α (substituted) or when every shift of the stated size is ruled out.")
IN_FLIGHT = 4  # answers requested at once
_SHOWN = 12  # answers kept in the evidence


async def run(ctx: CheckContext) -> CheckResult:
    scorer = ctx.scorer
    if scorer is None:
        return CheckResult.skipped(NAME, TITLE, "no reference weights to score with "
                                   "(--reference-gguf FILE)", MEANING)
    if ctx.requests < 1:
        return CheckResult.skipped(NAME, TITLE, "no requests left in the budget", MEANING)
    # when it decides, the audit ends: Holm then compares its p-value (1 / e-value) with at
    # least alpha / 2 (it and the tokenizer fingerprint count), so it bets at that level
    test = SurpriseTest(alpha=ctx.options.alpha / 2)
    rng = Random(f"likelihood:{ctx.seed}")
    bodies = [request_for(p, rng) for p in user_prompts(ctx.seed, ctx.requests)]
    shown: list[dict[str, Any]] = []
    failed = unscored = 0

    async def one(body: dict[str, Any]) -> tuple[dict[str, Any], Reply]:
        return body, await ctx.suspect.chat(NAME, body)

    pending: set[asyncio.Task[tuple[dict[str, Any], Reply]]] = set()
    queue = list(reversed(bodies))
    try:
        while (queue or pending) and not _decided(test, ctx):
            while queue and len(pending) < IN_FLIGHT:
                pending.add(asyncio.create_task(one(queue.pop())))
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                body, reply = task.result()
                if not reply.ok or not reply.content:
                    failed += 1
                    continue
                answer = await _score(scorer, body, reply)
                if answer is None:
                    unscored += 1
                    continue
                test.add_answer(answer)
                if len(shown) < _SHOWN:
                    shown.append(_shown(body, reply, answer))
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return _result(test, ctx, shown, failed, scorer.name, unscored)


async def _score(scorer: Scorer, body: dict[str, Any], reply: Reply) -> ScoredAnswer | None:
    """The answer scored under the reference, or None when it cannot be scored faithfully:
    an answer with reasoning (its reasoning would have to be scored in the template's place
    too), or text the reference's tokenizer does not reproduce byte for byte."""
    if reply.reasoning:
        return None
    try:
        return await scorer.score(body["messages"], reply.content,
                                  temperature=body["temperature"])
    except ManxueError:  # too long for the reference's context, or not reproducible
        return None


def _decided(test: SurpriseTest, ctx: CheckContext) -> bool:
    return test.substituted or test.vouches(ctx.options.likelihood_resolution)


def _shown(body: dict[str, Any], reply: Reply, answer: ScoredAnswer) -> dict[str, Any]:
    z = answer.excess / answer.sigma
    return {"prompt": clip(str(body["messages"][-1]["content"]), 120),
            "temperature": body["temperature"], "max_tokens": body["max_tokens"],
            "answer": clip(reply.content, 160), "tokens": len(answer),
            "mean_excess_nats": round(float(answer.excess.mean()), 3) if len(answer) else None,
            "mean_z": round(float(z.mean()), 3) if len(answer) else None}


def _result(test: SurpriseTest, ctx: CheckContext, shown: list[dict[str, Any]], failed: int,
            reference: str, unscored: int = 0) -> CheckResult:
    evidence: dict[str, Any] = {"reference": reference, **test.summary(),
                                "failed_requests": failed, "unscored_answers": unscored,
                                "answers_shown": shown,
                                "resolution": ctx.options.likelihood_resolution}
    e_value = test.substitution_evidence
    p_value = min(1.0, math.exp(-e_value))  # an e-value E gives the valid p-value 1/E
    facts = {"mean_z": test.mean_z, "answers": test.answers, "detectable": test.detectable,
             "detectable_answer_shift": test.detectable_answer_shift}
    if test.tokens == 0:
        why = "no answer came back to score" if not unscored else (
            f"{unscored} answers could not be scored (reasoning shown, or text the reference's "
            "tokenizer does not reproduce)")
        return CheckResult(NAME, TITLE, SKIP, why, MEANING, counts=False, evidence=evidence)
    if test.substituted:
        summary = (f"substituted: after {test.answers} answers ({test.tokens} tokens) the answers "
                   f"are more surprising to the reference than its own samples can be (mean "
                   f"excess {test.mean_excess:+.3f} nats/token, e-value ≥ 1/α)")
        return CheckResult(NAME, TITLE, FAIL, summary, MEANING, p_value=p_value,
                           statistic=test.mean_z, evidence=evidence, facts=facts, rejected=True,
                           decisive=True)
    found, per_answer = test.detectable, test.detectable_answer_shift
    if test.vouches(ctx.options.likelihood_resolution):
        summary = (f"consistent with the reference after {test.answers} answers: any "
                   f"substitute raising the mean standardized surprise by {found} or more per "
                   f"token is ruled out, and so is one answering a share of the requests that "
                   f"raises the mean over answers by {per_answer} (e.g. half of them by "
                   f"{round(2 * (per_answer or 0), 3)})")
        return CheckResult(NAME, TITLE, PASS, summary, MEANING, p_value=p_value,
                           statistic=test.mean_z, evidence=evidence, facts=facts, decisive=True)
    size = f"only shifts of {found} or more are ruled out" if found is not None else \
        "no shift size is ruled out yet"
    if found is not None and found <= ctx.options.likelihood_resolution:
        size = (f"shifts of {found} per token are ruled out, but a substitute answering a share "
                "of the requests is not yet" + (f" (only a mean shift over answers of "
                                                f"{per_answer} is)" if per_answer else ""))
    summary = (f"undecided after {test.answers} answers ({test.tokens} tokens): {size}; a larger "
               "budget would decide")
    return CheckResult(NAME, TITLE, PASS, summary, MEANING, p_value=p_value,
                       statistic=test.mean_z, evidence=evidence, facts=facts, counts=False)
