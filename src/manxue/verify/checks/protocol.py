"""Check 2, protocol conformance for the claimed model: one answer, one stream, two errors.

Items marked "identity" follow from which model it is (a reasoning model returns
reasoning_content; a non-reasoning one does not): failing one is evidence of substitution
(p = 0). The others are API conformance: reported, but they do not reject the claim.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from manxue.verify.catalog import Candidate
from manxue.verify.checks.base import FAIL, PASS, CheckContext, CheckResult, exchange
from manxue.verify.client import Endpoint, Reply, StreamReply

NAME, TITLE = "protocol", "Protocol conformance"
MEANING = ("Statistic: failed items. An 'identity' item failing (reasoning_content missing for a "
           "reasoning model, or present for one that does not reason) rejects the claim (p = 0); "
           "conformance items are reported only.")
NEEDED = 4


@dataclass(frozen=True)
class Item:
    name: str
    ok: bool
    kind: str = "conformance"
    detail: str = ""


async def run(ctx: CheckContext) -> CheckResult:
    if ctx.requests < NEEDED:
        return CheckResult.skipped(NAME, TITLE, "the request budget leaves no room for it", MEANING)
    claim = ctx.claim
    ask = {"messages": [{"role": "user", "content": "Say OK."}],
           "max_tokens": 64 if claim is not None and claim.reasoning else 16, "temperature": 0}
    streamed = {**ask, "stream_options": {"include_usage": True}}
    empty: dict[str, Any] = {"messages": []}
    unknown = {"model": "manxue-verify-no-such-model", "messages": ask["messages"], "max_tokens": 1}
    whole, stream, e1, e2 = await asyncio.gather(
        ctx.suspect.chat(NAME, ask), ctx.suspect.stream(NAME, streamed),
        ctx.suspect.chat(NAME, empty), _raw_chat(ctx.suspect, unknown))
    items = [*_whole_items(whole, claim), *_stream_items(stream, claim),
             _error_item("empty messages → 400/422 with an error object", e1),
             _error_item("unknown model → 400/404/422 with an error object", e2)]
    failed = [i for i in items if not i.ok]
    identity_failed = [i for i in failed if i.kind == "identity"]
    evidence = {"items": [i.__dict__ for i in items],
                "exchanges": [exchange(ask, whole), exchange({**streamed, "stream": True}, stream),
                              exchange(empty, e1), exchange(unknown, e2)]}
    identity_tested = any(i.kind == "identity" for i in items)
    if identity_failed:
        summary = "; ".join(f"{i.name}: {i.detail}" for i in identity_failed)
    elif failed:
        summary = f"{len(failed)} conformance item(s) failed: " + ", ".join(i.name for i in failed)
    else:
        summary = f"all {len(items)} items conform"
    facts = {"reasoning": bool(whole.reasoning or stream.joined("reasoning_content"))} \
        if whole.ok else {}
    return CheckResult(NAME, TITLE, FAIL if failed else PASS, summary, MEANING,
                       p_value=0.0 if identity_failed else (1.0 if identity_tested else None),
                       statistic=float(len(failed)), counts=identity_tested, evidence=evidence,
                       facts=facts)


async def _raw_chat(ep: Endpoint, body: dict[str, Any]) -> Reply:
    return await ep.chat(NAME, body)  # body names its own model: it wins over the endpoint's


def _whole_items(r: Reply, claim: Candidate | None) -> list[Item]:
    items = [Item("answer: 200 with a chat.completion object",
                  r.ok and r.data.get("object") == "chat.completion", detail=f"status {r.status}")]
    if not r.ok:
        return items
    items.append(Item("answer: message.content is a string",
                      isinstance(r.message.get("content"), str)))
    items.append(Item("answer: finish_reason is set", bool(_first_choice(r.data).get("finish_reason"))))
    items.append(_usage_item("answer", r.usage, claim))
    if claim is not None:
        has = bool(r.reasoning)
        if claim.reasoning:
            items.append(Item("answer: reasoning_content present (reasoning model)", has,
                              "identity", "" if has else "no reasoning_content in the answer"))
        else:
            items.append(Item("answer: no reasoning_content (not a reasoning model)", not has,
                              "identity", "reasoning_content present" if has else ""))
    return items


def _stream_items(s: StreamReply, claim: Candidate | None) -> list[Item]:
    items = [Item("stream: 200 and server-sent events", s.status == 200 and bool(s.chunks),
                  detail=f"status {s.status}" + (f", {s.error}" if s.error else ""))]
    if s.status != 200:
        return items
    items.append(Item("stream: every line is `data: {json}` or a comment", not s.malformed,
                      detail="; ".join(s.malformed[:3])))
    items.append(Item("stream: chunks are chat.completion.chunk objects",
                      all(c.get("object") == "chat.completion.chunk" for c in s.chunks)))
    items.append(Item("stream: ends with data: [DONE]", s.done))
    last = s.chunks[-1] if s.chunks else {}
    items.append(Item("stream: usage chunk with empty choices (include_usage)",
                      isinstance(last.get("usage"), dict) and last.get("choices") == []))
    items.append(_usage_item("stream", s.usage, claim))
    if claim is not None and claim.reasoning:
        items.append(Item("stream: reasoning_content deltas", bool(s.joined("reasoning_content"))))
    return items


def _usage_item(where: str, u: dict[str, Any] | None, claim: Candidate | None) -> Item:
    if u is None:
        return Item(f"{where}: usage reported", False, detail="no usage object")
    p, c, t = u.get("prompt_tokens"), u.get("completion_tokens"), u.get("total_tokens")
    ints = all(isinstance(v, int) for v in (p, c, t))
    ok = ints and p + c == t  # type: ignore[operator]
    detail = "" if ok else f"prompt {p} + completion {c} != total {t}"
    if ok and claim is not None and claim.usage_cache_fields:
        hit, miss = u.get("prompt_cache_hit_tokens"), u.get("prompt_cache_miss_tokens")
        ok = isinstance(hit, int) and isinstance(miss, int) and hit + miss == p
        detail = "" if ok else f"cache hit {hit} + miss {miss} != prompt {p}"
        return Item(f"{where}: usage with cache hit/miss summing to prompt_tokens", ok, detail=detail)
    return Item(f"{where}: usage prompt + completion = total", ok, detail=detail)


def _error_item(name: str, r: Reply) -> Item:
    ok = r.status in (400, 404, 422) and r.api_error is not None
    return Item(name, ok, detail=f"status {r.status}")


def _first_choice(data: Any) -> dict[str, Any]:
    try:
        c = data["choices"][0]
    except (KeyError, IndexError, TypeError):
        return {}
    return c if isinstance(c, dict) else {}
