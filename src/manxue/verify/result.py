"""The audit's JSON: verdict, claim, posterior, and per check what was sent, what came back,
the statistic, the threshold and its meaning, and the requests and tokens it spent; for the
verdict `error`, what made an endpoint unusable and what to do."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from manxue.verify.budget import Ledger
from manxue.verify.catalog import Candidate
from manxue.verify.checks.base import CheckResult
from manxue.verify.config import AuditConfig

CORRECTION = ("Holm–Bonferroni over the p-values of the checks that count, family-wise error "
              "rate alpha: an honest endpoint is flagged with probability at most alpha")


def _num(v: float | None, digits: int = 6) -> float | None:
    return None if v is None else round(float(v), digits)


def check_json(r: CheckResult, ledger: Ledger) -> dict[str, Any]:
    sus, ref = ledger.spend(r.name, "suspect"), ledger.spend(r.name, "reference")
    return {
        "name": r.name, "title": r.title, "status": r.status, "rejects_claim": r.rejected,
        "counts": r.counts, "summary": r.summary, "statistic": _num(r.statistic),
        "p_value": _num(r.p_value, 8), "threshold": _num(r.threshold, 8), "meaning": r.meaning,
        "requests": sus.requests, "tokens": sus.tokens,
        "reference_requests": ref.requests, "reference_tokens": ref.tokens,
        "evidence": r.evidence,
    }


def build_result(cfg: AuditConfig, claim: Candidate | None, results: list[CheckResult],
                 ledger: Ledger, verdict: str, reason: str, post: dict[str, float] | None, *,
                 started: datetime, seconds: float,
                 error: dict[str, Any] | None = None) -> dict[str, Any]:
    """`error` (verdict "error" only): {"side": "audited endpoint" | "reference", "status":
    HTTP status or None when nothing answered, "kind", "cause", "what_to_do", "replies": the
    failing replies, parsed and bounded}."""
    sus, ref = ledger.total("suspect"), ledger.total("reference")
    return {
        "verdict": verdict,
        "reason": reason,
        "error": error,
        "claim": claim.id if claim else (cfg.claim or cfg.model),
        "claim_known": claim is not None,
        "claim_name": claim.name if claim else None,
        "posterior": post or {},
        "alpha": cfg.options.alpha,
        "correction": CORRECTION,
        "checks": [check_json(r, ledger) for r in results],
        "requests": sus.requests,
        "tokens": sus.tokens,
        "reference_requests": ref.requests,
        "reference_tokens": ref.tokens,
        "settings": cfg.public(),
        "started_at": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
    }
