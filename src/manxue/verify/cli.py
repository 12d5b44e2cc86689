"""`manxue verify`: audit an OpenAI-compatible endpoint and print the verdict.

Mounted in manxue/cli.py as `app.command("verify")(verify)`. Exit status (EXIT): 0 authentic,
1 substituted, 3 inconclusive, 4 error (the endpoint or the reference could not be used), 2 bad
usage. While it runs, a progress bar on stderr (when stderr is a terminal, and not with --json)
shows the requests spent of the budget, the check running and the evidence so far.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table

from manxue.errors import ManxueError
from manxue.verify.audit import Progress as AuditProgress
from manxue.verify.audit import run_audit
from manxue.verify.config import DEFAULT_BUDGET, AuditConfig, parse_checks
from manxue.verify.report_html import render
from manxue.verify.scorer import open_scorer

out = Console()
err = Console(stderr=True)
EXIT = {"authentic": 0, "substituted": 1, "inconclusive": 3, "error": 4}
"""Exit status per verdict; 2 is bad usage (typer's and ours)."""
USAGE = 2
NONE = "—"
"""What a table prints for a value that is not there (never "None")."""


def verify(
    base_url: Annotated[str, typer.Option("--base-url", help="The endpoint to audit, e.g. "
                                          "https://api.example.com (with or without /v1).")],
    model: Annotated[str, typer.Option("--model", help="The model name to send.")],
    api_key: Annotated[str | None, typer.Option("--api-key", envvar="MANXUE_VERIFY_API_KEY",
                                                help="API key for the endpoint.")] = None,
    claim: Annotated[str | None, typer.Option("--claim", help="What the model claims to be: a "
                                              "catalog id or alias. \\[default: --model]")] = None,
    reference_url: Annotated[str | None, typer.Option(
        "--reference-url", help="A reference endpoint serving the claimed weights (official API "
        "or a local engine) for the distribution test.")] = None,
    reference_model: Annotated[str | None, typer.Option(
        "--reference-model", help="Model name at the reference. \\[default: --model]")] = None,
    reference_api_key: Annotated[str | None, typer.Option(
        "--reference-api-key", envvar="MANXUE_VERIFY_REFERENCE_API_KEY",
        help="API key for the reference endpoint.")] = None,
    reference_gguf: Annotated[Path | None, typer.Option(
        "--reference-gguf", exists=True, dir_okay=False,
        help="The claimed model's weights (GGUF): the likelihood check scores the endpoint's "
        "answers with them; no logprobs needed from the endpoint.")] = None,
    budget_requests: Annotated[int, typer.Option(
        "--budget-requests", min=1, help="Most requests sent to the audited endpoint.")] = DEFAULT_BUDGET,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for the generated probes, "
                                             "printed in the result. \\[default: random]")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="Write the HTML report here.",
                                                dir_okay=False)] = None,
    checks: Annotated[list[str] | None, typer.Option(
        "--checks", help="Checks to run (repeat or comma-separate): tokenizer, likelihood, "
        "protocol, capability, distribution, context; or 'all'. \\[default: all but context]")]
    = None,
) -> None:
    """Audit an endpoint: is it really the claimed model, at full strength?

    Exit status: 0 authentic, 1 substituted, 3 inconclusive, 4 error (the endpoint or the
    reference could not be used: wrong or missing key, no such model, nothing listening; the
    output says which and what to do), 2 bad usage.

    Example: manxue verify --base-url http://127.0.0.1:8765 --model smollm2 --report audit.html
    """
    logging.getLogger("manxue.engine.llama").setLevel(logging.ERROR)
    try:
        extra: dict[str, Any] = {} if seed is None else {"seed": seed}
        scorer = open_scorer(reference_gguf) if reference_gguf is not None else None
        try:
            cfg = AuditConfig(base_url=base_url, model=model, api_key=api_key, claim=claim,
                              reference_url=reference_url, reference_model=reference_model,
                              reference_api_key=reference_api_key,
                              budget_requests=budget_requests, checks=parse_checks(checks),
                              scorer=scorer, **extra)
            result = _run_with_bar(cfg, quiet=as_json)
        finally:
            if scorer is not None:
                scorer.close()
    except ManxueError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(USAGE) from None
    if report is not None:
        report.write_text(render(result), encoding="utf-8")
    if as_json:
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        _print(result, report)
    raise typer.Exit(EXIT.get(result["verdict"], EXIT["inconclusive"]))



def progress_bar(console: Console, *, quiet: bool = False) -> Progress:
    """One bar: requests spent of the budget, the check running, the evidence so far (off when
    `quiet` or when `console` is not a terminal)."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}",
                                                table_column=Column(width=12, no_wrap=True)),
                    BarColumn(),
                    MofNCompleteColumn(), TextColumn("requests"), TimeElapsedColumn(),
                    TextColumn("{task.fields[evidence]}",
                               table_column=Column(no_wrap=True, overflow="ellipsis")),
                    console=console, transient=True, disable=quiet or not console.is_terminal)


def follow(bar: Progress) -> Callable[[AuditProgress], None]:
    """An `on_change` for the audit's Progress that moves `bar`."""
    task: list[TaskID] = []

    def update(p: AuditProgress) -> None:
        total = max(1, p.budget)
        if not task:
            task.append(bar.add_task("starting", total=total, evidence=""))
        running = p.checks.get(p.current or "")
        bar.update(task[0], description=running.name if running else "deciding", total=total,
                   completed=min(p.spent, total), evidence=escape(p.evidence()),
                   refresh=True)  # at most once per request: every step is shown

    return update


def _run_with_bar(cfg: AuditConfig, *, quiet: bool) -> dict[str, Any]:
    bar = progress_bar(err, quiet=quiet)
    with bar:
        return asyncio.run(run_audit(cfg, AuditProgress(on_change=follow(bar))))


def _print(result: dict[str, Any], report: Path | None) -> None:
    colour = {"authentic": "green", "substituted": "red", "error": "red"}.get(result["verdict"],
                                                                            "yellow")
    error = result.get("error")
    if error:
        out.print(f"[bold {colour}]error[/]  the {error['side']} cannot be used: "
                  f"{escape(error['cause'])}")
        out.print(f"what to do: {escape(error['what_to_do'])}")
    else:
        out.print(f"[bold {colour}]{result['verdict']}[/]  claim {escape(str(result['claim']))}: "
                  f"{escape(result['reason'])}")
    table = Table("check", "status", "statistic", "p", "threshold", "requests", "tokens", "summary")
    for c in result["checks"]:
        stat = NONE if c["statistic"] is None else f"{c['statistic']:.4g}"
        p = NONE if c["p_value"] is None else f"{c['p_value']:.3g}"
        thr = NONE if c["threshold"] is None else f"{c['threshold']:.3g}"
        table.add_row(c["name"], c["status"], stat, p, thr, str(c["requests"]), str(c["tokens"]),
                      escape(c["summary"]))
    out.print(table)
    if result["posterior"]:
        top = ", ".join(f"{k} {v:.3f}" for k, v in list(result["posterior"].items())[:4])
        out.print(f"posterior: {top}")
    out.print(f"spent {result['requests']} requests / {result['tokens']} tokens on the endpoint, "
              f"{result['reference_requests']} / {result['reference_tokens']} on the reference; "
              f"seed {result['settings']['seed']}")
    if report is not None:
        out.print(f"report: {report}")
