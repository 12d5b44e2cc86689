"""Verify: audit any OpenAI-compatible endpoint for "is this really the claimed model?".

    from manxue.verify import AuditConfig, run_audit
    result = await run_audit(AuditConfig(base_url="http://127.0.0.1:8765", model="deepseek-chat"))

The verifier is a client of the endpoint's public HTTP API only. Checks: tokenizer fingerprint,
protocol conformance, capability probes, distribution test against a reference, and (opt-in)
a context and speed profile; combined with Holm–Bonferroni into one verdict. See docs/verify.md.
"""

from __future__ import annotations

from manxue.verify.audit import Progress, run_audit
from manxue.verify.checks.base import CheckOptions
from manxue.verify.config import AuditConfig

__all__ = ["AuditConfig", "CheckOptions", "Progress", "run_audit"]
