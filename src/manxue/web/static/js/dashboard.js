// The usage dashboard: /admin/dashboard/series, /admin/usage, /admin/deployments, /ready, errors.
import { ApiError, el, explain, fmt, getJson, keyField, saved, showError } from "./api.js";
import { barChart, lineChart } from "./charts.js";
import { fillTable } from "./tables.js";

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("controls"), range: $("range"), split: $("split"), currency: $("currency"), auto: $("auto"),
  error: $("dash-error"), status: $("dash-status"), kpis: $("kpis"), groupsTitle: $("groups-title"),
  deployments: $("deployments"), ready: $("ready"), news: $("breaker-news"),
};
const RANGES = {
  "24h": { bucket: "hour", hours: 24 }, "7d": { bucket: "hour", hours: 24 * 7 },
  "30d": { bucket: "day", hours: 24 * 30 }, "90d": { bucket: "day", hours: 24 * 90 },
};
const DIMENSION = { tenant: "tenant", key: "key", model: "model", deployment: "deployment" };

const admin = keyField({
  input: $("admin-key"), save: $("save-admin-key"), forget: $("forget-admin-key"),
  status: $("admin-key-status"), name: "adminKey", onChange: () => refreshAll(),
});

const prefs = saved.json("dashboard", {});
if (prefs.range in RANGES) ui.range.value = prefs.range;
if (prefs.split !== undefined) ui.split.value = prefs.split;
ui.auto.checked = prefs.auto !== false;

const sum = (xs) => xs.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
const num = (xs) => xs.map((v) => (v === null || v === undefined ? null : Number(v)));

function timeLabel(bucket) {
  return (label) => {
    const d = new Date(label);
    if (bucket === "day") return d.toLocaleDateString("en-CA", { month: "2-digit", day: "2-digit" });
    const hh = d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    return d.getHours() === 0 ? `${d.toLocaleDateString("en-CA", { month: "2-digit", day: "2-digit" })} ${hh}` : hh;
  };
}

function sinceFor(range) {
  const r = RANGES[range];
  const stepHours = r.bucket === "hour" ? 1 : 24;
  return new Date(Date.now() - (r.hours - stepHours) * 3600e3).toISOString();
}

function pickCurrency(currencies) {
  const keep = ui.currency.value;
  ui.currency.replaceChildren(...(currencies.length ? currencies : [""]).map((c) => el("option", { value: c }, c || "—")));
  if (currencies.includes(keep)) ui.currency.value = keep;
  else if (currencies.includes("USD")) ui.currency.value = "USD";
  return ui.currency.value;
}

function moneyOf(series, currency, field) {
  const m = series.money?.[currency];
  return m ? num(m[field]) : series.requests.map(() => 0);
}

function drawSeries(data) {
  const { buckets, series, bucket } = data;
  const split = Boolean(data.by);
  const currency = pickCurrency(data.currencies);
  const xFormat = timeLabel(bucket);
  const total = (field) => buckets.map((_, i) => sum(series.map((s) => s[field][i])));
  const totalMoney = (field) => buckets.map((_, i) => sum(series.map((s) => moneyOf(s, currency, field)[i])));
  const money = (v) => fmt.money(v);
  const common = { labels: buckets, xFormat };

  lineChart($("chart-requests"), { ...common, title: "Requests", format: fmt.int,
    series: split ? series.map((s) => ({ name: s.group, values: s.requests }))
      : [{ name: "requests", values: total("requests") }, { name: "failed or cut short", values: total("errors") }] });
  lineChart($("chart-tokens"), { ...common, title: "Tokens", format: fmt.int,
    series: split ? series.map((s) => ({ name: s.group, values: s.prompt_tokens.map((p, i) => p + s.completion_tokens[i]) }))
      : [{ name: "prompt", values: total("prompt_tokens") }, { name: "completion", values: total("completion_tokens") },
        { name: "prompt, cache hits", values: total("cache_hit_tokens") }] });
  const rate = (hit, prompt) => hit.map((h, i) => (prompt[i] ? h / prompt[i] : null));
  lineChart($("chart-cache"), { ...common, title: "Cache-hit rate (share of prompt tokens)", format: (v) => fmt.pct(v, 0),
    series: split ? series.map((s) => ({ name: s.group, values: rate(s.cache_hit_tokens, s.prompt_tokens) }))
      : [{ name: "cache-hit rate", values: rate(total("cache_hit_tokens"), total("prompt_tokens")) }] });
  lineChart($("chart-money"), { ...common, title: `Revenue${split ? "" : " and upstream cost"}${currency ? ` (${currency})` : ""}`, format: money,
    series: split ? series.map((s) => ({ name: s.group, values: moneyOf(s, currency, "revenue") }))
      : [{ name: "revenue", values: totalMoney("revenue") }, { name: "upstream cost", values: totalMoney("upstream_cost") }] });
  lineChart($("chart-margin"), { ...common, title: `Margin (revenue − upstream cost)${currency ? ` (${currency})` : ""}`, format: money,
    series: split ? series.map((s) => ({ name: s.group, values: moneyOf(s, currency, "margin") }))
      : [{ name: "margin", values: totalMoney("margin") }] });

  const revenue = sum(totalMoney("revenue"));
  const upstream = sum(totalMoney("upstream_cost"));
  const prompt = sum(total("prompt_tokens"));
  const kpis = [
    ["Requests", fmt.int(sum(total("requests")))],
    ["Failed or cut short", fmt.int(sum(total("errors")))],
    ["Prompt tokens", fmt.int(prompt)],
    ["Completion tokens", fmt.int(sum(total("completion_tokens")))],
    ["Cache-hit rate", prompt ? fmt.pct(sum(total("cache_hit_tokens")) / prompt) : "—"],
    ["Revenue", fmt.money(revenue), currency],
    ["Upstream cost", fmt.money(upstream), currency],
    ["Margin", fmt.money(revenue - upstream), currency],
    ["Cost-profit margin", upstream ? fmt.pct((revenue - upstream) / upstream, 0) : "—"],
    // usage upstreams reported past a request's reservation: not charged, so no balance goes below zero
    ["Unbilled", fmt.money(sum(totalMoney("unbilled"))), currency],
  ];
  ui.kpis.replaceChildren(...kpis.map(([k, v, unit]) => el("div", {}, el("dt", {}, k),
    el("dd", {}, v, unit ? el("span", { class: "unit" }, unit) : null))));
  ui.kpis.dataset.requests = String(sum(total("requests")));
}

function drawGroups(rows, by) {
  const currency = ui.currency.value;
  ui.groupsTitle.textContent = `By ${by}`;
  const mine = rows.filter((r) => !currency || r.currency === currency || r.currency === null);
  const merged = new Map();
  for (const r of rows) {
    const m = merged.get(r[by]) || { requests: 0 };
    m.requests += r.requests;
    merged.set(r[by], m);
  }
  barChart($("chart-group-requests"), { title: `Requests by ${by}`, valueName: "requests", format: fmt.int,
    items: [...merged].map(([label, m]) => ({ label, value: m.requests })).sort((a, b) => b.value - a.value).slice(0, 12) });
  barChart($("chart-group-revenue"), { title: `Revenue by ${by}${currency ? ` (${currency})` : ""}`, valueName: "revenue",
    format: (v) => fmt.money(v),
    items: mine.filter((r) => r.currency).map((r) => ({ label: r[by], value: Number(r.revenue) })).sort((a, b) => b.value - a.value).slice(0, 12) });
  // by deployment and by day, engines priced by the hour add a fixed cost (their GPU-hours)
  const fixed = rows.some((r) => "fixed_cost" in r);
  fillTable($("group-table"), `Totals by ${by}`, [
    { label: by }, { label: "requests", num: true }, { label: "prompt tokens", num: true },
    { label: "completion tokens", num: true }, { label: "cache-hit rate", num: true }, { label: "revenue", num: true },
    { label: "upstream cost", num: true }, ...(fixed ? [{ label: "fixed cost", num: true }] : []),
    { label: "margin", num: true }, { label: "cost-profit margin", num: true }, { label: "unbilled", num: true },
  ], rows.map((r) => [r[by], fmt.int(r.requests), fmt.int(r.prompt_tokens), fmt.int(r.completion_tokens),
    fmt.pct(r.cache_hit_rate), fmt.money(r.revenue, r.currency || ""), fmt.money(r.upstream_cost, r.currency || ""),
    ...(fixed ? [fmt.money(r.fixed_cost, r.currency || "")] : []),
    fmt.money(r.margin, r.currency || ""), r.cost_profit_margin === null ? "—" : fmt.pct(r.cost_profit_margin, 0),
    fmt.money(r.unbilled, r.currency || "")]),
  "No requests in this range.");
}

function drawErrors(data) {
  fillTable($("errors-ledger"), "Failed or cut-short requests in this range", [
    { label: "error" }, { label: "model" }, { label: "status" }, { label: "count", num: true }, { label: "last" },
  ], data.requests.map((e) => [e.error, e.model, el("span", { class: "badge bad" }, e.status), fmt.int(e.count),
    new Date(e.last_at).toLocaleString("en-GB")]), "No failed requests in this range.");
  fillTable($("errors-http"), "Error answers since the gateway started (all routes, including refusals)", [
    { label: "route" }, { label: "status", num: true }, { label: "count", num: true },
  ], data.http.map((e) => [e.route, e.status, fmt.int(e.count)]), "No error answers.");
  fillTable($("errors-upstream"), "Failed upstream attempts since the gateway started", [
    { label: "deployment" }, { label: "reason" }, { label: "count", num: true },
  ], [...data.upstream.map((e) => [e.deployment, e.reason, fmt.int(e.count)]),
    ...data.stream_interrupted.map((e) => [e.deployment, "stream interrupted", fmt.int(e.count)])],
  "No failed upstream attempts.");
}

let lastBreakers = new Map();

async function refreshDeployments() {
  const key = admin.get();
  if (!key) return;
  try {
    const [deps, ready] = await Promise.all([
      getJson("/admin/deployments", { key }),
      fetch("/ready", { cache: "no-store" }).then((r) => r.json()),
    ]);
    $("live").hidden = false;
    ui.ready.replaceChildren(el("span", { class: `badge ${ready.status === "ready" ? "ok" : "bad"}` }, ready.status),
      ready.status === "ready" ? " at least one deployment can take requests" : ` ${ready.message || ""}`);
    const news = [];
    for (const d of deps.data) {
      const before = lastBreakers.get(d.name);
      if (before && before !== d.breaker) news.push(`Deployment ${d.name}: breaker ${d.breaker.replace("_", "-")}.`);
    }
    lastBreakers = new Map(deps.data.map((d) => [d.name, d.breaker]));
    if (news.length) ui.news.textContent = news.join(" ");
    fillTable(ui.deployments, null, [
      { label: "deployment" }, { label: "model" }, { label: "kind" }, { label: "circuit breaker" },
      { label: "in flight", num: true }, { label: "priority", num: true }, { label: "where" },
    ], deps.data.map((d) => [d.name, d.model, d.kind, el("span", { class: `badge ${d.breaker}`, "data-breaker": d.breaker }, d.breaker.replace("_", "-")),
      fmt.int(d.in_flight), String(d.priority), d.base_url || "in-process"]), "No deployments.");
  } catch (err) {
    if (err instanceof ApiError) ui.ready.textContent = explain(err).title;
  }
}

async function refresh() {
  const key = admin.get();
  saved.setJson("dashboard", { range: ui.range.value, split: ui.split.value, auto: ui.auto.checked });
  if (!key) {
    ui.status.textContent = "Enter the admin key to see usage.";
    return;
  }
  const range = RANGES[ui.range.value];
  const since = sinceFor(ui.range.value);
  const by = ui.split.value;
  const groupBy = DIMENSION[by] || "model";
  const q = new URLSearchParams({ bucket: range.bucket, since });
  if (by) q.set("by", by);
  ui.status.textContent = "Loading…";
  try {
    const [series, groups, errors] = await Promise.all([
      getJson(`/admin/dashboard/series?${q}`, { key }),
      getJson(`/admin/usage?${new URLSearchParams({ by: groupBy, since })}`, { key }),
      getJson(`/admin/dashboard/errors?${new URLSearchParams({ since })}`, { key }),
    ]);
    ui.error.replaceChildren();
    drawSeries(series);
    drawGroups(groups.data, groupBy);
    drawErrors(errors);
    $("data").hidden = false;
    $("errors").hidden = false;
    ui.status.textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}.`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    showError(ui.error, err);
    ui.status.textContent = "";
    if (err instanceof ApiError && (err.status === 401 || err.status === 403)) $("admin-key").focus();
  }
}

function refreshAll() {
  refresh();
  refreshDeployments();
}

ui.form.addEventListener("submit", (ev) => { ev.preventDefault(); refreshAll(); });
for (const input of [ui.range, ui.split, ui.currency]) input.addEventListener("change", refresh);
ui.auto.addEventListener("change", refresh);
setInterval(() => { if (ui.auto.checked && !document.hidden) refresh(); }, 10_000);
setInterval(() => { if (!document.hidden) refreshDeployments(); }, 3_000);
refreshAll();
