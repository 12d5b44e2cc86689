"""Check 5 (opt-in, it costs tokens), context and speed profile: the longest context in which
the endpoint still finds a needle, its time to first token and its decode speed. Reported
only; it does not take part in the verdict."""

from __future__ import annotations

import random
from typing import Any

from manxue.verify.budget import BudgetExhausted
from manxue.verify.checks.base import FAIL, PASS, CheckContext, CheckResult, exchange
from manxue.verify.probes.base import number

NAME, TITLE = "context", "Context and speed profile"
MEANING = ("Statistic: the longest prompt (tokens, as the endpoint reported) in which a number "
           "hidden in the middle of filler text was found; lengths double from 256 up to the "
           "claim's context (capped). Speed: time to first token and completion tokens per "
           "second of one streamed answer. Reported only.")
_WORDS = ("river", "stone", "lamp", "window", "garden", "letter", "cloud", "market", "bridge",
          "candle", "forest", "harbour", "engine", "mirror", "valley", "signal")
_VERBS = ("follows", "crosses", "lights", "finds", "keeps", "moves", "hides", "meets")


def _filler(rng: random.Random, tokens: int) -> list[str]:
    # about 7 tokens per sentence in the common tokenizers
    return [f"The {rng.choice(_WORDS)} {rng.choice(_VERBS)} the {rng.choice(_WORDS)}."
            for _ in range(max(1, tokens // 7))]


async def run(ctx: CheckContext) -> CheckResult:
    if ctx.requests < 2:
        return CheckResult.skipped(NAME, TITLE, "the request budget leaves no room for it", MEANING)
    rng = random.Random(f"context:{ctx.seed}")
    speed_body = {"messages": [{"role": "user", "content": "Count from 1 to 100, separated by spaces."}],
                  "max_tokens": ctx.options.speed_max_tokens, "temperature": 0,
                  "stream_options": {"include_usage": True}}
    s = await ctx.suspect.stream(NAME, speed_body)
    completion = (s.usage or {}).get("completion_tokens")
    decode_s = s.seconds - (s.first_token_s or 0.0)
    speed = {"ttft_s": round(s.first_token_s, 3) if s.first_token_s is not None else None,
             "tokens_per_s": round(completion / decode_s, 1)
             if isinstance(completion, int) and completion > 1 and decode_s > 0 else None}
    limit = min(ctx.options.context_max_tokens, (ctx.claim.context if ctx.claim else None) or 8192)
    longest, failed_at, refused = 0, None, False
    tried: list[dict[str, Any]] = []
    shown = [exchange(speed_body, s)]
    length = 256
    while length <= limit and len(tried) + 1 < ctx.requests:
        secret = rng.randint(10000, 99999)
        filler = _filler(rng, length)
        filler.insert(len(filler) // 2, f"The secret number is {secret}.")
        body = {"messages": [{"role": "user", "content": " ".join(filler) + "\n\nWhat is the secret "
                              "number mentioned in the text above? Reply with the number only."}],
                "max_tokens": 16, "temperature": 0}
        try:
            r = await ctx.suspect.chat(NAME, body)
        except BudgetExhausted:
            break
        found = r.ok and number(secret)(r.content)
        prompt_tokens = (r.usage or {}).get("prompt_tokens")
        tried.append({"target_tokens": length, "prompt_tokens": prompt_tokens, "found": found,
                      "status": r.status})
        shown.append(exchange(body, r))
        if not found:
            failed_at, refused = length, not r.ok
            break
        longest = prompt_tokens if isinstance(prompt_tokens, int) else length
        length *= 4 if length < 4096 else 2
    evidence: dict[str, Any] = {"speed": speed, "needle": tried, "limit_tokens": limit,
                                "exchanges": shown}
    summary = (f"needle found up to {longest} prompt tokens"
               + (f", {'refused' if refused else 'lost'} at ~{failed_at}" if failed_at else "")
               + f"; TTFT {speed['ttft_s']} s, {speed['tokens_per_s']} tokens/s")
    return CheckResult(NAME, TITLE, FAIL if failed_at else PASS, summary, MEANING,
                       statistic=float(longest), counts=False, evidence=evidence)
