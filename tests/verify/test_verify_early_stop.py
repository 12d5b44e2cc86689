"""Sequential audits: a decisive check ends the audit (the tokenizer fingerprint runs first), and
the progress (requests spent of the budget, the check running, the evidence) is reported live."""

from __future__ import annotations

import io
import json
import re
import time
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from manxue.verify import cli
from manxue.verify.audit import Progress
from manxue.verify.checks import CHECKS, CheckContext
from manxue.verify.checks.base import FAIL, CheckResult
from manxue.verify.config import AuditConfig
from tests.verify.conftest import CLAIM, Bench, check, run

app = typer.Typer()
app.command("verify")(cli.verify)
app.command("noop")(lambda: None)
DEEPSEEK_GROUP = ("deepseek-r1", "deepseek-v3", "r1-distill-qwen-32b", "gpt-4o-0513")


def test_a_false_claim_is_decided_by_the_tokenizer_alone(bench: Bench) -> None:
    """`--claim deepseek-r1` against SmolLM2, no reference: before, 30 s to over 300 s of
    probing with R1's 8,192-token probes; now three requests."""
    r = bench.audit("honest", claim="deepseek-r1", reference=False, budget_requests=40, seed=11)
    assert r["verdict"] == "substituted", r["reason"]
    assert r["requests"] == 3 and r["seconds"] <= 15
    tok = check(r, "tokenizer")
    assert tok["rejects_claim"] and tok["summary"].startswith("tokenizer is smollm2, not deepseek")
    rest = [c for c in r["checks"] if c["name"] != "tokenizer"]
    assert [c["name"] for c in rest] == ["protocol", "capability", "distribution"]
    assert all(c["status"] == "skip" and c["summary"] == "the tokenizer already decided"
               and c["requests"] == 0 for c in rest)
    assert next(iter(r["posterior"])) == CLAIM
    assert sum(r["posterior"].get(m, 0.0) for m in DEEPSEEK_GROUP) < 1e-4


def test_the_command_decides_a_false_claim_in_seconds(bench: Bench) -> None:
    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["verify", "--base-url", bench.gateway.url, "--model", "honest",
                                   "--claim", "deepseek-r1", "--seed", "7", "--json"])
    seconds = time.monotonic() - t0
    assert res.exit_code == cli.EXIT["substituted"], res.output
    result = json.loads(res.stdout)
    assert result["requests"] <= 10 and seconds <= 15, (result["requests"], seconds)


def test_padding_is_not_decisive_the_audit_goes_on(bench: Bench) -> None:
    r = bench.audit("honest", base_url=bench.padding.url, reference=False,
                    checks=("tokenizer", "protocol"), budget_requests=7, seed=2)
    assert r["verdict"] == "substituted" and check(r, "tokenizer")["rejects_claim"]
    assert check(r, "protocol")["requests"] == 4


def test_any_check_can_be_decisive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mechanism is general: a result marked decisive skips the checks after it."""
    async def decisive(ctx: CheckContext) -> CheckResult:
        return CheckResult("protocol", "Protocol conformance", FAIL, "seen enough", "m",
                           p_value=0.0, decisive=True)

    async def never(ctx: CheckContext) -> CheckResult:
        raise AssertionError("ran after a decisive check")

    monkeypatch.setitem(CHECKS, "protocol", decisive)
    monkeypatch.setitem(CHECKS, "capability", never)
    cfg = AuditConfig(base_url="http://127.0.0.1:9", model="m", claim=CLAIM,
                      checks=("protocol", "capability"), seed=1)
    from manxue.verify.audit import run_audit

    r = run(run_audit(cfg))
    assert r["verdict"] == "substituted" and r["requests"] == 0
    assert check(r, "capability")["summary"] == "the protocol already decided"


def test_progress_reports_spent_of_budget_the_current_check_and_evidence(bench: Bench) -> None:
    seen: list[dict[str, Any]] = []
    progress = Progress(on_change=lambda p: seen.append(p.totals()))
    cfg = AuditConfig(base_url=bench.gateway.url, model="honest", claim="deepseek-r1",
                      budget_requests=40, seed=5)
    from manxue.verify.audit import run_audit

    run(run_audit(cfg, progress))
    assert seen[0]["budget"] == 40 and seen[0]["spent"] == 0
    assert [s["spent"] for s in seen if s["current"] == "tokenizer"][-1] == 3
    assert any("tokenizer: 2 of 3 requests" in s["evidence"] for s in seen)
    assert seen[-1]["spent"] == 3 and seen[-1]["current"] is None
    assert "tokenizer fail: tokenizer is smollm2" in seen[-1]["evidence"]


def test_the_command_shows_a_progress_bar_on_a_terminal_only(bench: Bench,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["verify", "--base-url", bench.gateway.url, "--model", "honest", "--claim",
            "deepseek-r1", "--seed", "3"]
    shown = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=shown, force_terminal=True, width=160))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.getvalue())  # without colours, cursor moves
    assert "tokenizer: 1 of 3 requests" in bar and "3/40 requests" in bar
    assert "tokenizer fail: tokenizer is smollm2" in bar
    assert "requests" not in res.stdout.splitlines()[0]  # the bar never reaches stdout

    quiet = io.StringIO()
    monkeypatch.setattr(cli, "err", Console(file=quiet, force_terminal=True, width=160))
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["verdict"] == "substituted"
    assert quiet.getvalue() == ""  # --json: no bar, stdout stays clean JSON
