"""From check results to one verdict: `authentic`, `substituted` or `inconclusive`.

1. The p-values of the checks that count (tokenizer, protocol identity items, distribution,
   and capability when its priors are measured) are corrected with Holm–Bonferroni at `alpha`
   (manxue.verify.holm): an honest endpoint is flagged with probability at most `alpha`.
2. Any rejected check → `substituted`.
3. Otherwise `authentic` when a check that could have told the claim from a substitute passed:
   the likelihood check vouching (every substitute that shifts the per-token surprise under
   the reference weights by its stated size is ruled out, manxue.verify.surprise), or the
   distribution test on logprobs with enough prompts to reject (measured power against a
   Q2_K requantization: docs/benchmarks/verify.md; on text alone its power at 16 requests is
   low, so a text-only pass does not make an audit authentic), or the tokenizer fingerprint
   matching the claim together with a posterior of at least DECISIVE (0.9) on the claim — which
   rules out the other catalog models, not a quantization of the claimed weights.
4. Otherwise `inconclusive` (e.g. no reference was given and the probes cannot separate the
   claim from its quantizations).

Beside these three, `error`: the audited endpoint or the reference could not be used at all
(wrong or missing key, no such model, nothing listening, no answer): nothing was learnt about
the claim. `describe_failure` says what went wrong, whose it is and what to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from manxue.verify.checks.base import FAIL, PASS, SKIP, CheckResult
from manxue.verify.client import Reply, StreamReply
from manxue.verify.holm import holm

AUTHENTIC, SUBSTITUTED, INCONCLUSIVE, ERROR = "authentic", "substituted", "inconclusive", "error"
VERDICTS = (AUTHENTIC, SUBSTITUTED, INCONCLUSIVE, ERROR)
DECISIVE = 0.9


def correct(results: list[CheckResult], alpha: float) -> dict[str, float]:
    """Holm–Bonferroni over the counted p-values: sets each counted check's threshold and
    whether it rejects the claim (idempotent). Returns the counted p-values."""
    counted = {r.name: r.p_value for r in results
               if r.counts and r.status != SKIP and r.p_value is not None}
    decisions = holm(counted, alpha)
    for r in results:
        d = decisions.get(r.name)
        if d is not None:
            r.threshold, r.rejected = d.threshold, d.rejected
            if d.rejected:
                r.status = FAIL
    return counted


def decide(results: list[CheckResult], alpha: float, claim_id: str | None,
           post: dict[str, float] | None) -> tuple[str, str]:
    counted = correct(results, alpha)
    rejected = [r for r in results if r.rejected]
    if rejected:
        return SUBSTITUTED, "rejected by: " + "; ".join(f"{r.name} ({r.summary})" for r in rejected)
    if not counted:
        return INCONCLUSIVE, "no check could test the claim (unknown claim or everything skipped)"
    by_name = {r.name: r for r in results}
    likely = by_name.get("likelihood")
    if likely is not None and likely.status == PASS and likely.decisive:
        shift = likely.evidence.get("detectable_shift")
        per_answer = likely.evidence.get("detectable_answer_shift")
        return AUTHENTIC, ("no check rejected the claim, and the answers are as likely under the "
                           "reference weights as the reference's own samples: a substitute "
                           f"shifting the surprise per token by {shift} or more would have been "
                           "caught, and so would one answering a share of the requests that "
                           f"shifts the mean over answers by {per_answer} or more")
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


# -- the `error` verdict: an endpoint that cannot be used -------------------------------------

SIDE_NAMES = {"suspect": "audited endpoint", "reference": "reference"}
_CLIENT_SPECIFIC = frozenset({400, 413, 422})
"""Statuses about one request's content (the protocol check provokes them): not a sign that
the endpoint cannot be used."""


@dataclass(frozen=True)
class Failure:
    """Why one request to a side brought nothing usable, as far as it says about the side."""

    status: int | None
    """The HTTP status; None when no answer came (connection, name resolution, timeout)."""
    kind: str
    """What failed, comparable between requests: "http 401", "connection refused", …"""
    message: str | None = None
    """The endpoint's own error message (parsed, clipped), or the client's exception text."""


def failure_of(reply: Reply | StreamReply) -> Failure | None:
    """The failure a reply shows about its endpoint, or None (a usable answer, or a refusal of
    this request's content such as 400 for empty messages)."""
    if usable(reply):
        return None
    status = reply.status
    if status in _CLIENT_SPECIFIC:
        return None
    message = (reply.api_error or {}).get("message") or reply.error
    if status == 0:
        return Failure(None, _network_kind(reply.error or ""), reply.error)
    if status == 200:  # JSON without choices, a stream of no chunks, a body over the cap
        return Failure(200, "not a chat completion", reply.error)
    return Failure(status, f"http {status}", message)


def usable(reply: Reply | StreamReply) -> bool:
    """A chat completion came back: an answer with `choices`, or a stream with chunks."""
    if isinstance(reply, StreamReply):
        return reply.status == 200 and bool(reply.chunks)
    return reply.ok and isinstance(reply.data.get("choices"), list)


def _network_kind(error: str) -> str:
    text = error.lower()
    if "dnserror" in text or re.search(r"name or service not known|nodename nor servname|"
                                       r"temporary failure in name resolution|no address associated",
                                       text):
        return "name not resolved"
    if "timeout" in text:
        return "timeout"
    if "refused" in text or "connect call failed" in text or "clientconnectorerror" in text:
        return "connection refused"
    if "targetforbidden" in text:
        return "forbidden target"
    if "disconnected" in text or "connectionreset" in text:
        return "connection closed"
    return error.split(":", 1)[0].strip() or "no answer"


@dataclass(frozen=True)
class Side:
    """What the error messages need to know about one side of the audit."""

    side: str  # "suspect" | "reference"
    url: str
    model: str
    has_key: bool
    timeout: float = 300.0


def describe_failure(failure: Failure, side: Side) -> dict[str, Any]:
    """The result's `error` object: side, status, cause (with the endpoint's own message) and
    what to do."""
    who = SIDE_NAMES.get(side.side, side.side)
    cause, todo = _explain(failure, side)
    return {"side": who, "status": failure.status, "kind": failure.kind, "cause": cause,
            "what_to_do": todo}


def _quote(failure: Failure) -> str:
    said = f": {failure.message}" if failure.message else ""
    return f"HTTP {failure.status}{said}"


def _key_option(side: Side) -> str:
    if side.side == "reference":
        return ("--reference-api-key or MANXUE_VERIFY_REFERENCE_API_KEY (reference_api_key in "
                "POST /v1/verify)")
    return "--api-key or MANXUE_VERIFY_API_KEY (api_key in POST /v1/verify)"


def _url_option(side: Side) -> str:
    return "--reference-url" if side.side == "reference" else "--base-url"


def _model_option(side: Side) -> str:
    return "--reference-model" if side.side == "reference" else "--model"


def _explain(f: Failure, side: Side) -> tuple[str, str]:
    the = "the reference" if side.side == "reference" else "the endpoint"
    if f.status == 401:
        if side.has_key:
            return (f"{the} refused the API key ({_quote(f)})",
                    f"check the key given with {_key_option(side)}: it is wrong, revoked or for "
                    "another provider")
        return (f"{the} requires an API key and none was given ({_quote(f)})",
                f"give its key with {_key_option(side)}")
    if f.status == 403:
        return (f"{the} refused access ({_quote(f)})",
                f"check that the key given with {_key_option(side)} may use model "
                f"{side.model!r}, and that this machine may reach {side.url}")
    if f.status == 402:
        return (f"{the} refused for billing ({_quote(f)})",
                "top up the account behind the key, or use another key")
    if f.status == 404:
        return (f"{the} has no model {side.model!r}, or no chat completions API at {side.url} "
                f"({_quote(f)})",
                f"check {_model_option(side)} (the name the endpoint expects; GET /v1/models "
                f"lists them) and {_url_option(side)}")
    if f.status == 429:
        return (f"{the} is rate-limiting this key or its quota is spent ({_quote(f)})",
                "wait and retry, or check the key's quota with the provider")
    if f.status is not None and 300 <= f.status < 400:
        return (f"{the} redirected the request (HTTP {f.status}); redirects are not followed",
                f"give the URL it redirects to with {_url_option(side)}")
    if f.status is not None and f.status >= 500:
        return (f"{the} failed with a server error ({_quote(f)})",
                "retry later; if it persists, the provider's service is down")
    if f.status == 200:
        return (f"{the} answered 200 but not with a chat completion ({side.url} may not be an "
                f"OpenAI-compatible API{': ' + f.message if f.message else ''})",
                f"check {_url_option(side)}: it should be the API's root, e.g. "
                "https://api.example.com or https://api.example.com/v1")
    if f.status is not None:
        return (f"{the} answered {_quote(f)}",
                f"check {_url_option(side)}, {_model_option(side)} and the key")
    return _explain_network(f, side, the)


def _explain_network(f: Failure, side: Side, the: str) -> tuple[str, str]:
    url = _url_option(side)
    if f.kind == "connection refused":
        return (f"could not connect to {side.url}: connection refused (nothing listens there)",
                f"check the host and port in {url}, and that the server is running")
    if f.kind == "name not resolved":
        return (f"the host name of {side.url} does not resolve",
                f"check the host name in {url} (spelling, DNS from this machine)")
    if f.kind == "timeout":
        return (f"{the} did not answer within {side.timeout:g} s",
                f"check that {side.url} is up and reachable from here, then retry")
    detail = f" ({f.message})" if f.message else ""
    return (f"no answer from {side.url}{detail}",
            f"check {url} and that the endpoint is reachable from here")
