"""What every check receives and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from manxue.verify.catalog import Candidate
from manxue.verify.client import Endpoint, Reply, StreamReply
from manxue.verify.scorer import Scorer

PASS, FAIL, SKIP = "pass", "fail", "skip"
_TEXT = 300  # characters of any text kept in the evidence


@dataclass
class CheckOptions:
    """Knobs of the individual checks (the defaults are what the benchmark measured)."""

    alpha: float = 0.01
    dist_samples: int = 2
    dist_max_tokens: int = 4
    dist_temperature: float = 1.0
    dist_top_logprobs: int = 5
    logprob_tolerance: float = 0.25
    permutations: int = 9999
    context_max_tokens: int = 32768
    likelihood_resolution: float = 0.1
    """Largest shift of the mean standardized surprise per token that the likelihood check
    must rule out before it vouches for the endpoint."""
    speed_max_tokens: int = 64


@dataclass
class CheckContext:
    suspect: Endpoint
    reference: Endpoint | None
    claim: Candidate | None
    seed: int
    requests: int
    """Requests to the audited endpoint this check may use."""
    options: CheckOptions = field(default_factory=CheckOptions)
    scorer: Scorer | None = None
    """The reference's weights, to score answers with (the likelihood check)."""


@dataclass
class CheckResult:
    name: str
    title: str
    status: str
    summary: str
    meaning: str
    p_value: float | None = None
    statistic: float | None = None
    counts: bool = True
    """Whether the p-value takes part in the verdict (see verdict.py)."""
    evidence: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None
    rejected: bool = False
    decisive: bool = False
    """The result settles the verdict whatever the checks after it would find (an exact
    rejection of the claim): the audit stops here and skips the rest (audit.py)."""

    @classmethod
    def skipped(cls, name: str, title: str, why: str, meaning: str = "",
                evidence: dict[str, Any] | None = None) -> CheckResult:
        return cls(name, title, SKIP, why, meaning, counts=False, evidence=evidence or {})


def clip(text: str, limit: int = _TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"… (+{len(text) - limit} chars)"


def sent(body: dict[str, Any]) -> dict[str, Any]:
    """A request body as shown in the evidence (long texts shortened)."""
    out: dict[str, Any] = {}
    for k, v in body.items():
        if k == "messages" and isinstance(v, list):
            out[k] = [{**m, "content": clip(str(m.get("content", "")))} for m in v
                      if isinstance(m, dict)]
        else:
            out[k] = v
    return out


def received(reply: Reply | StreamReply) -> dict[str, Any]:
    """What came back, as shown in the evidence: parsed and bounded (clipped chat text, the
    usage counts, an error's OpenAI-style message/type/code), never a raw body."""
    out: dict[str, Any] = {"status": reply.status}
    if reply.error:
        out["error"] = clip(reply.error)
    if reply.api_error:
        out["api_error"] = dict(reply.api_error)
    if isinstance(reply, StreamReply):
        out.update(chunks=len(reply.chunks), done=reply.done, content=clip(reply.joined("content")))
        reasoning = reply.joined("reasoning_content")
        if reasoning:
            out["reasoning_content"] = clip(reasoning)
        if reply.malformed:
            out["malformed"] = reply.malformed[:5]
    elif reply.ok:
        out["content"] = clip(reply.content)
        if reply.reasoning:
            out["reasoning_content"] = clip(reply.reasoning)
    if reply.usage is not None:
        out["usage"] = reply.usage
    return out


def exchange(body: dict[str, Any], reply: Reply | StreamReply, **extra: Any) -> dict[str, Any]:
    return {"sent": sent(body), "received": received(reply), **extra}
