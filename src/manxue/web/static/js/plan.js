// The planner page: a form over GET /v1/plan, with its tables and charts.
import { ApiError, el, fmt, getJson, showError } from "./api.js";
import { barChart, lineChart, stackedBar } from "./charts.js";
import { fillPairs } from "./tables.js";

const $ = (id) => document.getElementById(id);
const form = $("plan-form");
const FIELDS = ["model", "hardware", "gpus", "precision", "context", "gpu_hour", "price_list", "efficiency",
  "utilisation", "overhead", "kv_dtype", "batch", "kv_bytes_per_token", "input_per_output", "hit_rate", "at"];
const DEFAULTS = { model: "deepseek-r1", hardware: "h800", gpus: "16", price_list: "deepseek-r1-2025-02" };
const usd = (v) => (v === null || v === undefined ? "—" : `$${fmt.money(v)}`);
const gb = (b) => (b === null || b === undefined ? "—"
  : `${(b / 1e9).toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 })} GB`);
const rate = (v) => (v ? fmt.num(v, v < 100 ? 1 : 0) : "—");
const tps = (v) => (v ? `${rate(v)} tok/s` : "—");

async function loadOptions() {
  const opts = await getJson("/web/plan-options");
  $("model").replaceChildren(...opts.models.map((m) => el("option", { value: m.id }, `${m.name} (${m.id})`)));
  $("hardware").replaceChildren(...opts.hardware.map((h) => el("option", { value: h.id }, `${h.name} (${h.id})`)));
  $("precisions").replaceChildren(...opts.precisions.map((p) => el("option", { value: p })));
  $("price_list").append(...opts.price_lists.map((p) => el("option", { value: p.id }, p.id)));
}

function params() {
  const q = new URLSearchParams();
  for (const name of FIELDS) {
    const value = form.elements[name].value.trim();
    if (value !== "") q.set(name, value);
  }
  return q;
}

function fillFrom(query) {
  const given = [...query.keys()].some((k) => FIELDS.includes(k));
  for (const name of FIELDS) {
    const value = given ? query.get(name) : DEFAULTS[name];
    if (value !== null && value !== undefined) form.elements[name].value = value;
  }
  return given;
}

function sweep(max) {
  const out = [];
  for (let b = 1; b < max && out.length < 11; b *= 2) out.push(b);
  out.push(max);
  return out;
}

async function drawBatchCharts(q, report) {
  const max = report.max_concurrent_sequences;
  const tpsFig = $("chart-batch-tps");
  const costFig = $("chart-batch-cost");
  const seqFig = $("chart-batch-seq");
  if (!report.fits || !(max >= 1)) {
    for (const fig of [tpsFig, seqFig, costFig]) fig.hidden = true;
    return;
  }
  const batches = sweep(max);
  const runs = await Promise.all(batches.map((b) => {
    const p = new URLSearchParams(q);
    p.set("batch", String(b));
    return getJson(`/v1/plan?${p}`);
  }));
  const labels = batches.map(String);
  for (const fig of [tpsFig, seqFig, costFig]) fig.hidden = false;
  lineChart(tpsFig, { title: "Decode throughput vs batch (tok/s, all sequences)", labels, xFormat: (b) => `batch ${b}`,
    format: (v) => fmt.num(v, 0), series: [{ name: "tok/s", values: runs.map((r) => r.decode_tokens_per_s) }] });
  lineChart(seqFig, { title: "Speed of each sequence vs batch (tok/s)", labels, xFormat: (b) => `batch ${b}`,
    format: (v) => fmt.num(v, 0), series: [{ name: "tok/s per sequence", values: runs.map((r) => r.decode_tokens_per_s_per_sequence) }] });
  lineChart(costFig, { title: "USD per 1M output tokens vs batch", labels, xFormat: (b) => `batch ${b}`,
    format: (v) => fmt.money(v), series: [{ name: "USD per 1M output tokens", values: runs.map((r) => r.usd_per_million_output_tokens) }] });
}

function draw(r) {
  $("result").hidden = false;
  const verdict = r.fits
    ? el("div", { class: "alert ok", role: "status" }, el("strong", {}, `Fits: up to ${fmt.int(r.max_concurrent_sequences)} sequences of ${fmt.int(r.context)} tokens.`),
      el("p", {}, `${r.model.name} on ${r.gpus} × ${r.hardware.name} (${r.nodes} node${r.nodes > 1 ? "s" : ""}), ${r.precision} weights.`))
    : el("div", { class: "alert error", role: "status" }, el("strong", {}, "Does not fit."),
      el("p", {}, `The smallest deployment that fits: ${r.min_gpus_to_fit ?? "—"} accelerators (${r.min_nodes_to_fit ?? "—"} nodes). Add accelerators, shorten the context or pick a smaller precision.`));
  $("verdict").replaceChildren(verdict);
  const kpis = [
    ["Decode (all sequences)", rate(r.decode_tokens_per_s), "tok/s"],
    ["Per sequence", rate(r.decode_tokens_per_s_per_sequence), "tok/s"],
    ["Prefill", rate(r.prefill_tokens_per_s), "tok/s"],
    ["Cost per hour", usd(r.cost_usd_per_hour)],
    ["Per 1M output tokens", usd(r.usd_per_million_output_tokens)],
  ];
  if (r.price_list && r.price_list.cost_profit_margin_at_capacity !== undefined) {
    kpis.push(["Cost-profit margin", fmt.pct(r.price_list.cost_profit_margin_at_capacity, 0)]);
  }
  $("plan-kpis").replaceChildren(...kpis.map(([k, v, unit]) => el("div", {}, el("dt", {}, k),
    el("dd", {}, v, unit ? el("span", { class: "unit" }, unit) : null))));

  if (r.fits) {
    stackedBar($("chart-memory"), { title: `Memory: ${gb(r.memory_bytes)} in all`, format: gb, parts: [
      { name: "weights", value: r.weights_bytes }, { name: "overhead", value: r.overhead_bytes },
      { name: "KV cache", value: r.kv_budget_bytes }] });
  } else {
    barChart($("chart-memory"), { title: "Memory needed vs available", format: gb, valueName: "bytes", items: [
      { label: "available", value: r.memory_bytes }, { label: "weights", value: r.weights_bytes },
      { label: "overhead allowance", value: r.overhead_bytes }] });
  }
  barChart($("chart-cost"), { title: "USD per 1M tokens", valueName: "USD", format: (v) => `$${fmt.money(v)}`, colorBy: "index",
    items: [{ label: "output", value: r.usd_per_million_output_tokens }, { label: "input, cache miss", value: r.usd_per_million_input_miss_tokens },
      { label: "input, cache hit", value: r.usd_per_million_input_hit_tokens }].filter((x) => x.value !== null) });

  fillPairs($("table-memory"), "Memory", [
    ["weights", gb(r.weights_bytes)], ["overhead allowance", gb(r.overhead_bytes)],
    ["KV cache budget", gb(r.kv_budget_bytes)], ["total memory", gb(r.memory_bytes)],
    ["KV cache per token", `${fmt.int(r.kv_bytes_per_token)} B (${r.kv_dtype})`],
    ["KV cache per sequence", gb(r.kv_bytes_per_sequence)], ["fits", r.fits ? "yes" : "no"],
    ["max concurrent sequences", fmt.int(r.max_concurrent_sequences)],
    ["smallest deployment that fits", r.min_gpus_to_fit ? `${r.min_gpus_to_fit} accelerators (${r.min_nodes_to_fit} nodes)` : "—"]]);
  fillPairs($("table-throughput"), "Throughput (roofline upper bound)", [
    [`decode, batch ${fmt.int(r.decode_batch)} (${r.decode_bound}-bound)`, tps(r.decode_tokens_per_s)],
    ["decode, per sequence at that batch", tps(r.decode_tokens_per_s_per_sequence)],
    ["decode, one sequence alone", tps(r.single_sequence_tokens_per_s)],
    ["prefill", tps(r.prefill_tokens_per_s)],
    ["decode per accelerator", tps(r.per_gpu?.decode_tokens_per_s)],
    ["prefill per accelerator", tps(r.per_gpu?.prefill_tokens_per_s)]]);
  fillPairs($("table-cost"), `Cost at $${r.gpu_hour_usd}/accelerator-hour, utilisation ${fmt.pct(r.utilisation, 0)}`, [
    ["per hour", usd(r.cost_usd_per_hour)], ["per 1M output tokens", usd(r.usd_per_million_output_tokens)],
    ["per 1M input tokens, cache miss", usd(r.usd_per_million_input_miss_tokens)],
    ["per 1M input tokens, cache hit", usd(r.usd_per_million_input_hit_tokens)],
    ["per 1M output tokens, one sequence alone", usd(r.usd_per_million_output_tokens_single_sequence)]]);
  const p = r.price_list;
  $("price-wrap").hidden = !p;
  if (p) {
    const u = p.unit_prices || {};
    fillPairs($("table-price"), `Selling at ${p.id}${p.model ? ` (${p.model})` : ""}`, [
      ["unit prices per 1M (hit / miss / output)", u.hit ? `${u.hit} / ${u.miss} / ${u.output} ${u.currency}` : "—"],
      ["traffic mix", p.mix ? `${fmt.num(p.mix.input_per_output, 2)} input per output token, ${fmt.pct(p.mix.cache_hit_rate)} cache hits` : "—"],
      ["revenue per hour at capacity", usd(p.revenue_usd_per_hour_at_capacity)],
      ["cost per hour", usd(p.cost_usd_per_hour)],
      ["cost-profit margin", p.cost_profit_margin_at_capacity === undefined ? "—" : fmt.pct(p.cost_profit_margin_at_capacity, 0)],
      ["break-even price", p.break_even_fraction_of_list_price === undefined ? "—" : `${fmt.pct(p.break_even_fraction_of_list_price)} of list`],
      ...(p.message ? [["note", p.message]] : [])]);
  }
  $("assumptions").replaceChildren(...(r.assumptions || []).map((a) => el("li", {}, a)));
  $("model-source").textContent = r.model.source || "";
  $("hardware-source").textContent = r.hardware.source || "";
}

async function plan() {
  const q = params();
  const status = $("plan-status");
  const errorBox = $("plan-error");
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  status.textContent = "Planning…";
  history.replaceState(null, "", `${location.pathname}?${q}`);
  try {
    const report = await getJson(`/v1/plan?${q}`);
    errorBox.replaceChildren();
    draw(report);
    await drawBatchCharts(q, report);
    status.textContent = "Done.";
    $("result").dataset.ready = "true";
  } catch (err) {
    status.textContent = "";
    showError(errorBox, err);
    const field = err instanceof ApiError && err.param ? form.elements[err.param] : null;
    if (field) { field.setAttribute("aria-invalid", "true"); field.focus(); }
  }
}

form.addEventListener("submit", (ev) => { ev.preventDefault(); plan(); });

try {
  await loadOptions();
  if (fillFrom(new URLSearchParams(location.search))) plan();
} catch (err) {
  showError($("plan-error"), err);
}
