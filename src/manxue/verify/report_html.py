"""The audit as one self-contained HTML page (inline CSS, no scripts, no external assets)."""

from __future__ import annotations

import json
from html import escape
from typing import Any

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:960px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem}
.badge{display:inline-block;padding:.2rem .7rem;border-radius:1rem;color:#fff;font-weight:600}
.authentic{background:#1f7a3f}.substituted{background:#b3261e}.inconclusive{background:#8a6d00}
.error{background:#6d1b7b}.stopped{border-left:4px solid #6d1b7b;background:#faf5fb;padding:.6rem 1rem}
.pass{color:#1f7a3f;font-weight:600}.fail{color:#b3261e;font-weight:600}.skip{color:#6b7280}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border-bottom:1px solid #e3e6ec;
padding:.35rem .5rem;text-align:left;vertical-align:top}th{background:#f5f6f8}
.bar{background:#3b5bdb;height:.8rem;display:inline-block;vertical-align:middle}
pre{background:#f5f6f8;padding:.7rem;overflow-x:auto;font-size:12.5px;white-space:pre-wrap}
.muted{color:#6b7280}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return escape(str(v))


def _head(r: dict[str, Any]) -> str:
    s = r.get("settings", {})
    ref = (f"{escape(str(s.get('reference_url')))} model {escape(str(s.get('reference_model')))}"
           if s.get("reference_model") else "none")
    return (f"<h1>Endpoint audit: <span class='badge {escape(r['verdict'])}'>{escape(r['verdict'])}"
            f"</span></h1><p>{escape(r['reason'])}</p><table>"
            f"<tr><th>endpoint</th><td>{escape(str(s.get('base_url')))} model "
            f"{escape(str(s.get('model')))}</td></tr>"
            f"<tr><th>claim</th><td>{escape(str(r['claim']))} "
            f"<span class='muted'>{escape(r.get('claim_name') or 'not in the catalog')}</span></td></tr>"
            f"<tr><th>reference</th><td>{ref}</td></tr>"
            f"<tr><th>spent</th><td>{r['requests']} requests, {r['tokens']} tokens on the endpoint; "
            f"{r['reference_requests']} requests, {r['reference_tokens']} tokens on the reference "
            f"(budget {_fmt(s.get('budget_requests'))} requests)</td></tr>"
            f"<tr><th>seed</th><td>{_fmt(s.get('seed'))} · started {escape(r['started_at'])} · "
            f"{r['seconds']} s</td></tr>"
            f"<tr><th>combination</th><td>{escape(r['correction'])}; alpha = {r['alpha']}</td></tr>"
            "</table>")


def _error(r: dict[str, Any]) -> str:
    """Why the audit could not run: whose endpoint, the cause, what to do, the failed replies."""
    e = r.get("error")
    if not e:
        return ""
    status = "no answer" if e.get("status") is None else f"HTTP {e['status']}"
    replies = escape(json.dumps(e.get("replies") or [], ensure_ascii=False, indent=1))
    return (f"<section class='stopped' id='error'><h2>The {escape(str(e['side']))} cannot be used"
            f"</h2><table><tr><th>side</th><td>{escape(str(e['side']))}</td></tr>"
            f"<tr><th>status</th><td>{escape(status)}</td></tr>"
            f"<tr><th>cause</th><td>{escape(str(e['cause']))}</td></tr>"
            f"<tr><th>what to do</th><td>{escape(str(e['what_to_do']))}</td></tr></table>"
            "<p class='muted'>Nothing was learnt about the claim: the checks after this were not "
            "run.</p><details><summary>The failed replies</summary>"
            f"<pre>{replies}</pre></details></section>")


def _posterior(r: dict[str, Any]) -> str:
    post = r.get("posterior") or {}
    if r.get("error"):
        return ""  # nothing was learnt about the claim
    if not post:
        return "<h2>Posterior over candidate models</h2><p class='muted'>No check informed it.</p>"
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{v:.4f}</td><td><span class='bar' "
                   f"style='width:{max(1, round(v * 300))}px'></span></td></tr>" for k, v in post.items())
    return ("<h2>Posterior over candidate models</h2><table><tr><th>model</th><th>probability</th>"
            f"<th></th></tr>{rows}</table>")


def _summary(r: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><a href='#{escape(c['name'])}'>{escape(c['title'])}</a></td>"
        f"<td class='{escape(c['status'])}'>{escape(c['status'])}"
        f"{' (rejects the claim)' if c['rejects_claim'] else ''}</td><td>{_fmt(c['statistic'])}</td>"
        f"<td>{_fmt(c['p_value'])}</td><td>{_fmt(c['threshold'])}</td><td>{c['requests']}"
        f"{' + ' + str(c['reference_requests']) if c['reference_requests'] else ''}</td>"
        f"<td>{c['tokens']}{' + ' + str(c['reference_tokens']) if c['reference_tokens'] else ''}</td></tr>"
        for c in r["checks"])
    return ("<h2>Checks</h2><table><tr><th>check</th><th>status</th><th>statistic</th><th>p</th>"
            "<th>threshold</th><th>requests (+ reference)</th><th>tokens (+ reference)</th></tr>"
            f"{rows}</table>")


def _check(c: dict[str, Any]) -> str:
    counts = "counts toward the verdict" if c["counts"] else "reported only"
    evidence = escape(json.dumps(c["evidence"], ensure_ascii=False, indent=1))
    return (f"<h2 id='{escape(c['name'])}'>{escape(c['title'])} — "
            f"<span class='{escape(c['status'])}'>{escape(c['status'])}</span></h2>"
            f"<p>{escape(c['summary'])}</p><p class='muted'>{escape(c['meaning'])} ({counts})</p>"
            f"<details><summary>What was sent and what came back</summary><pre>{evidence}</pre>"
            "</details>")


def render(result: dict[str, Any]) -> str:
    body = _head(result) + _error(result) + _posterior(result) + _summary(result) + "".join(
        _check(c) for c in result["checks"])
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>manxue verify: {escape(result['verdict'])}</title><style>{_CSS}</style></head>"
            f"<body>{body}</body></html>")


def render_pending(job_id: str, progress: list[dict[str, Any]], error: str | None = None) -> str:
    """A page for an audit still running (it reloads itself every 3 s), or one that failed."""
    if error is not None:
        return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                f"<title>manxue verify: failed</title><style>{_CSS}</style></head><body>"
                f"<h1>Audit {escape(job_id)} failed</h1><pre>{escape(error)}</pre></body></html>")
    rows = "".join(f"<tr><td>{escape(p['title'])}</td><td>{escape(p['state'])}</td>"
                   f"<td>{p['requests']}/{p['planned']}</td></tr>" for p in progress)
    spent = sum(int(p.get("requests") or 0) for p in progress)
    planned = sum(int(p.get("planned") or 0) for p in progress)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<meta http-equiv='refresh' content='3'>"
            f"<title>manxue verify: running</title><style>{_CSS}</style></head><body>"
            f"<h1>Audit {escape(job_id)} is running</h1><p>{spent} of {planned} planned requests "
            "spent</p><table><tr><th>check</th><th>state</th>"
            f"<th>requests</th></tr>{rows}</table></body></html>")
