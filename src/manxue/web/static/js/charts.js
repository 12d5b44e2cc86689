// Small SVG charts, drawn by hand: lines over time, horizontal bars, one stacked bar.
// Each chart is a <figure> with a caption, the SVG (role="img" with a text summary), a
// legend, and its numbers in a table for keyboard and screen-reader users.
import { el } from "./api.js";

const NS = "http://www.w3.org/2000/svg";
const HEIGHT = 220;
const PAD = { top: 12, right: 12, bottom: 28, left: 58 };
const drawn = new Set();

function svgNode(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A round upper bound and tick step for values up to `max`. */
export function niceScale(max, ticks = 4) {
  if (!(max > 0)) return { top: 1, step: 0.25 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  return { top: step * Math.ceil(max / step), step };
}

function width(figure) {
  return Math.max(280, Math.round(figure.clientWidth || figure.parentElement?.clientWidth || 600) - 24);
}

function frame(figure, spec, kind) {
  figure.classList.add("chart");
  figure.replaceChildren(el("figcaption", { id: `${figure.id}-title` }, spec.title));
  figure._spec = spec;
  figure._kind = kind;
  drawn.add(figure);
}

function dataTable(headers, rows) {
  const table = el("table");
  table.append(el("thead", {}, el("tr", {}, ...headers.map((h, i) => el("th", { scope: "col", class: i ? "num" : null }, h)))));
  const body = el("tbody");
  for (const row of rows) body.append(el("tr", {}, ...row.map((c, i) => (i ? el("td", { class: "num" }, c) : el("th", { scope: "row" }, c)))));
  table.append(body);
  return el("details", {}, el("summary", {}, "Numbers"), el("div", { class: "table-wrap" }, table));
}

function legend(names) {
  const ul = el("ul", { class: "legend", "aria-hidden": "true" });
  names.forEach((name, i) => ul.append(el("li", { class: `s${(i % 8) + 1}` }, name)));
  return ul;
}

/**
 * Lines over time. spec: {title, labels: [...], series: [{name, values}], format(n),
 * xFormat(label)}; a null value leaves a gap.
 */
export function lineChart(figure, spec) {
  frame(figure, spec, "line");
  const { labels, series } = spec;
  const format = spec.format || ((n) => String(n));
  const xFormat = spec.xFormat || ((l) => l);
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && Number.isFinite(v));
  const max = values.length ? Math.max(...values) : 0;
  figure.dataset.max = String(max);
  figure.dataset.points = String(values.length);
  if (!labels.length || !series.length) {
    figure.append(el("p", { class: "empty" }, "No data in this range."));
    return;
  }
  const W = width(figure);
  const { top, step } = niceScale(max);
  const x0 = PAD.left, x1 = W - PAD.right, y0 = HEIGHT - PAD.bottom, y1 = PAD.top;
  const x = (i) => (labels.length === 1 ? (x0 + x1) / 2 : x0 + ((x1 - x0) * i) / (labels.length - 1));
  const y = (v) => y0 - ((y0 - y1) * v) / top;
  const summary = `${spec.title}: ${series.map((s) => `${s.name} peaks at ${format(Math.max(0, ...s.values.filter(Number.isFinite)))}`).join("; ")}.`;
  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${HEIGHT}`, role: "img", "aria-labelledby": `${figure.id}-title ${figure.id}-desc` });
  svg.append(svgNode("desc", { id: `${figure.id}-desc` }, summary));
  for (let v = 0; v <= top + step / 2; v += step) {
    svg.append(svgNode("line", { class: v ? "grid-line" : "axis", x1: x0, x2: x1, y1: y(v), y2: y(v) }));
    svg.append(svgNode("text", { x: x0 - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const every = Math.max(1, Math.ceil(labels.length / Math.max(2, Math.floor((x1 - x0) / 90))));
  labels.forEach((label, i) => {
    if (i % every === 0 || i === labels.length - 1 && labels.length < 3) {
      svg.append(svgNode("text", { x: x(i), y: HEIGHT - 8, "text-anchor": "middle" }, xFormat(label)));
    }
  });
  series.forEach((s, k) => {
    const cls = `s${(k % 8) + 1}`;
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = false; return; }
      d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(svgNode("path", { class: `line ${cls}`, d }));
    if (labels.length <= 60) {
      s.values.forEach((v, i) => {
        if (v === null || !Number.isFinite(v)) return;
        const dot = svgNode("circle", { class: cls, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: labels.length <= 31 ? 3 : 2 });
        dot.append(svgNode("title", {}, `${s.name}, ${xFormat(labels[i])}: ${format(v)}`));
        svg.append(dot);
      });
    }
  });
  figure.append(svg, legend(series.map((s) => s.name)));
  figure.append(dataTable(["time", ...series.map((s) => s.name)],
    labels.map((l, i) => [xFormat(l), ...series.map((s) => (s.values[i] === null ? "—" : format(s.values[i])))])));
}

/** Horizontal bars. spec: {title, items: [{label, value}], format(n)}. */
export function barChart(figure, spec) {
  frame(figure, spec, "bar");
  const format = spec.format || ((n) => String(n));
  const items = spec.items.filter((it) => Number.isFinite(it.value));
  const max = items.length ? Math.max(...items.map((it) => it.value)) : 0;
  figure.dataset.max = String(max);
  figure.dataset.points = String(items.length);
  if (!items.length) {
    figure.append(el("p", { class: "empty" }, "No data."));
    return;
  }
  const W = width(figure);
  const row = 26;
  const labelW = Math.min(180, Math.round(W * 0.36));
  const H = items.length * row + 8;
  const scale = max > 0 ? (W - labelW - 90) / max : 0;
  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${figure.id}-title ${figure.id}-desc` });
  svg.append(svgNode("desc", { id: `${figure.id}-desc` }, items.map((it) => `${it.label}: ${format(it.value)}`).join("; ")));
  items.forEach((it, i) => {
    const yy = 4 + i * row;
    const label = it.label.length > 26 ? `${it.label.slice(0, 25)}…` : it.label;
    svg.append(svgNode("text", { x: labelW - 6, y: yy + 16, "text-anchor": "end" }, label));
    const bar = svgNode("rect", { class: `s${(spec.colorBy === "index" ? i % 8 : 0) + 1}`, x: labelW, y: yy + 3, height: row - 8, width: Math.max(it.value > 0 ? 2 : 0, it.value * scale), rx: 2 });
    bar.append(svgNode("title", {}, `${it.label}: ${format(it.value)}`));
    svg.append(bar);
    svg.append(svgNode("text", { x: labelW + Math.max(0, it.value * scale) + 6, y: yy + 16 }, format(it.value)));
  });
  figure.append(svg);
  figure.append(dataTable(["", spec.valueName || "value"], items.map((it) => [it.label, format(it.value)])));
}

/** One bar split into parts of a whole. spec: {title, parts: [{name, value}], format(n)}. */
export function stackedBar(figure, spec) {
  frame(figure, spec, "stack");
  const format = spec.format || ((n) => String(n));
  const parts = spec.parts.filter((p) => p.value > 0);
  const total = parts.reduce((a, p) => a + p.value, 0);
  figure.dataset.max = String(total);
  figure.dataset.points = String(parts.length);
  const W = width(figure);
  const H = 44;
  const svg = svgNode("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${figure.id}-title ${figure.id}-desc` });
  svg.append(svgNode("desc", { id: `${figure.id}-desc` }, parts.map((p) => `${p.name}: ${format(p.value)}`).join("; ")));
  let at = 0;
  spec.parts.forEach((p, i) => {
    if (!(p.value > 0) || !total) return;
    const w = (W * p.value) / total;
    const rect = svgNode("rect", { class: `s${(i % 8) + 1}`, x: at, y: 6, width: Math.max(1, w), height: H - 12 });
    rect.append(svgNode("title", {}, `${p.name}: ${format(p.value)}`));
    svg.append(rect);
    at += w;
  });
  figure.append(svg, legend(spec.parts.map((p) => `${p.name} ${format(p.value)}`)));
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => {
    for (const fig of drawn) {
      if (!fig.isConnected) { drawn.delete(fig); continue; }
      const kind = fig._kind;
      (kind === "bar" ? barChart : kind === "stack" ? stackedBar : lineChart)(fig, fig._spec);
    }
  }, 150);
});
