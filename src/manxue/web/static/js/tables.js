// Filling <table> elements: a caption, header cells with scope, numbers right-aligned.
import { el } from "./api.js";

/**
 * columns: [{label, num}] ; rows: arrays of cells (strings, numbers or Nodes).
 * With no rows the table says `empty` in one cell.
 */
export function fillTable(table, caption, columns, rows, empty = "Nothing yet.") {
  const head = el("tr", {}, ...columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: String(columns.length), class: "hint" }, empty)));
  }
  for (const row of rows) {
    body.append(el("tr", {}, ...row.map((cell, i) => {
      const attrs = { class: columns[i]?.num ? "num" : null };
      return i === 0 ? el("th", { scope: "row", ...attrs }, cell) : el("td", attrs, cell);
    })));
  }
  table.replaceChildren(...(caption ? [el("caption", {}, caption)] : []), el("thead", {}, head), body);
}

/** Two-column key/value table. */
export function fillPairs(table, caption, pairs) {
  fillTable(table, caption, [{ label: "" }, { label: "", num: true }], pairs);
  table.querySelector("thead").remove();
}
