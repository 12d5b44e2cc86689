"""The HTML report is self-contained and escapes what endpoints sent back."""

from __future__ import annotations

import re
from typing import Any

from manxue.verify.report_html import render


def _result() -> dict[str, Any]:
    check = {"name": "capability", "title": "Capability probes", "status": "pass",
             "rejects_claim": False, "counts": True, "summary": "passed 3/17", "statistic": 3.0,
             "p_value": 0.7, "threshold": 0.0033, "meaning": "m", "requests": 17, "tokens": 900,
             "reference_requests": 0, "reference_tokens": 0,
             "evidence": {"probes": [{"reply": "<script>alert(1)</script>"}]}}
    return {"verdict": "authentic", "reason": "r", "claim": "smollm2-135m-instruct",
            "claim_name": "SmolLM2", "posterior": {"smollm2-135m-instruct": 0.6, "x": 0.4},
            "alpha": 0.01, "correction": "Holm", "checks": [check], "requests": 17, "tokens": 900,
            "reference_requests": 0, "reference_tokens": 0, "started_at": "2026-01-01T00:00:00+00:00",
            "seconds": 1.0, "settings": {"base_url": "http://h", "model": "m", "seed": 1,
                                         "budget_requests": 40, "reference_model": None}}


def test_report_is_self_contained_and_escaped() -> None:
    html = render(_result())
    assert html.startswith("<!doctype html>")
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert not re.search(r"(src|href)=['\"]?https?:", html)
    assert "<link" not in html and "@import" not in html
    assert "authentic" in html and "0.6000" in html
