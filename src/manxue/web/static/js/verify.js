// The verifier page: POST /v1/verify starts an audit; GET /v1/verify/{id} is polled for progress
// and the result; /v1/verify/{id}/report.html is the HTML report.
import { ApiError, call, el, explain, fmt, getJson, keyField, saved, showError } from "./api.js";
import { barChart } from "./charts.js";
import { fillPairs } from "./tables.js";

const $ = (id) => document.getElementById(id);
const form = $("verify-form");
const ui = {
  ownFields: $("own-fields"), otherFields: $("other-fields"), ownModel: $("own-model"),
  status: $("verify-status"), error: $("verify-error"), run: $("run"),
  progressSection: $("progress-section"), progress: $("progress"), bar: $("progress-bar"),
  progressText: $("progress-text"), progressEvidence: $("progress-evidence"),
  resultSection: $("result-section"), verdict: $("verdict"), checks: $("check-results"),
};
const DONE = new Set(["done", "finished", "completed", "complete", "succeeded", "failed", "error", "cancelled"]);
const POLL_MS = 700;

const key = keyField({
  input: $("api-key"), save: $("save-key"), forget: $("forget-key"), status: $("key-status"),
  name: "apiKey", onChange: () => loadModels(),
});
let job = null; // {id, result}

function target() { return form.elements.target.value; }

function showTarget() {
  const own = target() === "own";
  ui.ownFields.hidden = !own;
  ui.otherFields.hidden = own;
}
for (const radio of form.elements.target) radio.addEventListener("change", showTarget);

async function loadModels() {
  try {
    const body = await getJson("/v1/models", { key: key.get() });
    const ids = (body.data || []).map((m) => m.id);
    ui.ownModel.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
    const want = saved.get("verifyModel");
    if (want && ids.includes(want)) ui.ownModel.value = want;
  } catch (err) {
    const why = err instanceof ApiError && err.status === 401 && !key.get()
      ? "Enter the API key first" : explain(err).title;
    ui.ownModel.replaceChildren(el("option", { value: "" }, why));
  }
}
ui.ownModel.addEventListener("change", () => saved.set("verifyModel", ui.ownModel.value));

function requestBody() {
  const own = target() === "own";
  // Without base_url the gateway audits itself, with the caller's key.
  const body = own
    ? { model: ui.ownModel.value }
    : { base_url: $("base-url").value.trim(), model: $("model").value.trim(), api_key: $("target-key").value.trim() || undefined };
  const optional = { claim: $("claim").value.trim(), reference_url: $("reference-url").value.trim(),
    reference_model: $("reference-model").value.trim(), reference_api_key: $("reference-key").value.trim() };
  for (const [k, v] of Object.entries(optional)) if (v) body[k] = v;
  const budget = parseInt($("budget").value, 10);
  if (budget > 0) body.budget_requests = budget;
  body.checks = [...form.querySelectorAll("input[name=check]:checked")].map((c) => c.value);
  return body;
}

function checkList(state) {
  const list = state.progress || state.checks || [];
  return Array.isArray(list) ? list : Object.values(list);
}

function drawProgress(state) {
  const checks = checkList(state);
  let planned = 0;
  let spent = 0;
  ui.progress.replaceChildren(...checks.map((c) => {
    planned += c.planned || 0;
    spent += Math.min(c.requests || 0, c.planned || c.requests || 0);
    const label = c.status || c.state || "pending";
    return el("li", { "data-check": c.name },
      el("div", { class: "check-head" }, el("span", { class: "check-name" }, c.title || c.name),
        el("span", { class: `badge ${label}` }, label)),
      el("div", { class: "hint" }, `${fmt.int(c.requests || 0)}${c.planned ? ` of ${fmt.int(c.planned)}` : ""} requests` +
        (c.reference_requests ? `, ${fmt.int(c.reference_requests)} to the reference` : "")));
  }));
  // the job's totals: requests spent of the budget (older gateways: the sum over the checks)
  const budget = Number.isFinite(state.budget) && state.budget > 0 ? state.budget : planned;
  const used = Number.isFinite(state.spent) ? state.spent : spent;
  ui.bar.max = Math.max(1, budget);
  ui.bar.value = Math.min(used, ui.bar.max);
  const current = checks.find((c) => c.name === state.current);
  ui.progressText.textContent = `${fmt.int(used)} of ${fmt.int(budget)} requests spent on the endpoint` +
    (state.reference_spent ? `, ${fmt.int(state.reference_spent)} on the reference` : "") +
    (current ? ` · running: ${current.title || current.name}` : finished(state) ? " · finished" : "");
  ui.progressEvidence.textContent = state.evidence || "";
}

function finished(state) {
  return Boolean(state.result) || DONE.has(String(state.status || state.state || "").toLowerCase());
}

function evidenceBlock(evidence) {
  if (!evidence || !Object.keys(evidence).length) return null;
  return el("details", {}, el("summary", {}, "Evidence: what was sent, what came back"),
    el("pre", {}, JSON.stringify(evidence, null, 2)));
}

// verdict "error": the endpoint or the reference could not be used; say whose, why, what to do
function errorBlock(error) {
  if (!error) return null;
  const status = error.status === null || error.status === undefined ? "no answer" : `HTTP ${error.status}`;
  return el("div", { class: "alert error", id: "verdict-error", role: "alert" },
    el("strong", {}, `The ${error.side} cannot be used (${status})`),
    el("p", {}, error.cause),
    el("p", {}, el("b", {}, "What to do: "), error.what_to_do));
}

function drawResult(result) {
  ui.resultSection.hidden = false;
  ui.verdict.replaceChildren(...[
    el("p", { class: "verdict" }, "Verdict: ", el("span", { class: `badge ${result.verdict}`, id: "verdict-value" }, result.verdict)),
    result.error ? errorBlock(result.error) : el("p", {}, result.reason || ""),
    el("p", { class: "hint" }, `Claim: ${result.claim_name || result.claim || "—"}` +
      (result.error ? "" : result.correction ? `. ${result.correction}.` : "")),
  ]);
  const post = Object.entries(result.posterior || {}).sort((a, b) => b[1] - a[1]);
  $("chart-posterior").hidden = !post.length;
  if (post.length) {
    barChart($("chart-posterior"), { title: "Which model is it? (posterior)", valueName: "probability",
      format: (v) => fmt.pct(v, 1), items: post.slice(0, 10).map(([label, value]) => ({ label, value })) });
  }
  fillPairs($("totals"), "Spent", [
    ["requests to the endpoint", fmt.int(result.requests)], ["tokens", fmt.int(result.tokens)],
    ["requests to the reference", fmt.int(result.reference_requests || 0)],
    ["seconds", result.seconds === undefined ? "—" : fmt.num(result.seconds, 1)],
    ["seed", result.settings?.seed ?? "—"]]);
  ui.checks.replaceChildren(...(result.checks || []).map((c) => {
    const rows = [
      ["statistic", c.statistic ?? "—"], ["p-value", c.p_value ?? "—"], ["threshold", c.threshold ?? "—"],
      ["requests", fmt.int(c.requests)], ["tokens", fmt.int(c.tokens)]];
    const table = el("table");
    fillPairs(table, null, rows);
    return el("li", { "data-check": c.name },
      el("div", { class: "check-head" }, el("span", { class: "check-name" }, c.title || c.name), el("span", { class: `badge ${c.status}` }, c.status)),
      el("p", {}, c.summary || ""),
      c.meaning ? el("p", { class: "hint" }, c.meaning) : null,
      el("div", { class: "table-wrap" }, table),
      evidenceBlock(c.evidence));
  }));
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

$("download-json").addEventListener("click", () => {
  if (!job?.result) return;
  saveBlob(new Blob([JSON.stringify(job.result, null, 2)], { type: "application/json" }), `verify-${job.id}.json`);
});
$("download-html").addEventListener("click", async () => {
  if (!job) return;
  try {
    const response = await call(`/v1/verify/${encodeURIComponent(job.id)}/report.html`, { key: key.get() });
    saveBlob(await response.blob(), `verify-${job.id}.html`);
  } catch (err) {
    showError(ui.error, err);
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function run() {
  ui.error.replaceChildren();
  const body = requestBody();
  if (!body.model) {
    showError(ui.error, new ApiError(422, "Pick or type the model to audit"));
    (target() === "own" ? ui.ownModel : $("model")).focus();
    return;
  }
  if (target() === "other" && !body.base_url) {
    showError(ui.error, new ApiError(422, "Type the endpoint's base URL"));
    $("base-url").focus();
    return;
  }
  ui.run.disabled = true;
  ui.resultSection.hidden = true;
  ui.status.textContent = "Starting the audit…";
  try {
    const started = await (await call("/v1/verify", { key: key.get(), method: "POST", body })).json();
    job = { id: started.id, result: null };
    ui.progressSection.hidden = false;
    let state = started;
    for (;;) {
      drawProgress(state);
      if (finished(state)) break;
      ui.status.textContent = "Auditing…";
      await sleep(POLL_MS);
      state = await getJson(`/v1/verify/${encodeURIComponent(job.id)}`, { key: key.get() });
    }
    if (state.result) {
      job.result = state.result;
      drawResult(state.result);
      ui.status.textContent = `Done: ${state.result.verdict}.`;
      $("result-title").focus();
    } else {
      const message = state.error?.message || state.error || "The audit failed.";
      showError(ui.error, new Error(String(message)));
      ui.status.textContent = "";
    }
  } catch (err) {
    showError(ui.error, err);
    ui.status.textContent = "";
  } finally {
    ui.run.disabled = false;
  }
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
showTarget();
loadModels();
