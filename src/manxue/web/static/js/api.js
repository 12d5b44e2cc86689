// Talking to this gateway: keys kept in the browser, JSON calls, errors explained for people.

const PREFIX = "manxue.";

export const saved = {
  get(name) {
    try { return localStorage.getItem(PREFIX + name); } catch { return null; }
  },
  set(name, value) {
    try { localStorage.setItem(PREFIX + name, value); return true; } catch { return false; }
  },
  remove(name) {
    try { localStorage.removeItem(PREFIX + name); } catch { /* storage off */ }
  },
  json(name, fallback) {
    const raw = saved.get(name);
    if (raw === null) return fallback;
    try { return JSON.parse(raw); } catch { return fallback; }
  },
  setJson(name, value) { return saved.set(name, JSON.stringify(value)); },
};

export class ApiError extends Error {
  constructor(status, message, { code = null, type = null, param = null, retryAfter = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.type = type;
    this.param = param;
    this.retryAfter = retryAfter;
  }
}

/** An ApiError from a failed response (OpenAI error JSON, or whatever the body is). */
export async function errorFrom(response) {
  let message = `${response.status} ${response.statusText}`;
  let detail = {};
  try {
    const body = await response.json();
    if (body && body.error) {
      detail = body.error;
      message = body.error.message || message;
    }
  } catch { /* not JSON */ }
  const retry = Number(response.headers.get("Retry-After"));
  return new ApiError(response.status, message, {
    code: detail.code ?? null, type: detail.type ?? null, param: detail.param ?? null,
    retryAfter: Number.isFinite(retry) && retry > 0 ? retry : null,
  });
}

export function authHeaders(key) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** fetch() on this origin with a bearer key; throws ApiError unless the answer is 2xx. */
export async function call(path, { key = null, method = "GET", body, signal, headers = {} } = {}) {
  const init = { method, signal, headers: { ...authHeaders(key), ...headers }, cache: "no-store" };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "The gateway cannot be reached: check that it is running and the network is up.");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function getJson(path, options) {
  return (await call(path, options)).json();
}

/** A sentence or two a person can act on, for each status the API answers with. */
export function explain(err) {
  if (!(err instanceof ApiError)) return { title: "Something went wrong", text: String(err.message || err) };
  const server = err.message;
  const wait = err.retryAfter ? ` Try again in ${Math.ceil(err.retryAfter)} s.` : " Try again in a moment.";
  switch (err.status) {
    case 0: return { title: "No connection", text: server };
    case 401: return { title: "API key refused (401)", text: `${server}. Enter a valid key under “API key”.` };
    case 402: return { title: "Balance used up (402)", text: `${server}.` };
    case 403: return { title: "Not allowed (403)", text: server };
    case 404: return { title: "Not found (404)", text: server };
    case 413: return { title: "Too large (413)", text: server };
    case 422: return { title: "Invalid value (422)", text: server };
    case 429: return { title: "Rate limit reached (429)", text: `${server}.${wait}` };
    case 503: return { title: "Model busy or unavailable (503)", text: `${server}.${wait}` };
    default:
      if (err.status >= 500) return { title: `Server error (${err.status})`, text: `${server}.${wait}` };
      return { title: `Request refused (${err.status})`, text: server };
  }
}

/** Fill `box` with an alert for `err` (role=alert, so screen readers announce it). */
export function showError(box, err) {
  const { title, text } = explain(err);
  box.replaceChildren(alertNode("error", title, text));
  box.hidden = false;
}

export function alertNode(kind, title, text) {
  const div = el("div", { class: `alert ${kind}`, role: kind === "error" ? "alert" : "status" });
  div.append(el("strong", {}, title));
  if (text) div.append(el("p", {}, text));
  return div;
}

/** document.createElement with attributes and children (strings become text nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A key field that remembers its value in this browser: <input> + Save + Forget. */
export function keyField({ input, save, forget, status, name, onChange }) {
  const show = () => {
    const has = Boolean(saved.get(name));
    status.textContent = has ? "Saved in this browser." : "Not saved yet.";
    forget.hidden = !has;
  };
  input.value = saved.get(name) || "";
  show();
  const store = () => {
    const value = input.value.trim();
    if (value) saved.set(name, value); else saved.remove(name);
    show();
    onChange?.(value);
  };
  save.addEventListener("click", store);
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); store(); }
  });
  forget.addEventListener("click", () => {
    saved.remove(name);
    input.value = "";
    show();
    onChange?.("");
    input.focus();
  });
  return { get: () => input.value.trim() || saved.get(name) || "" };
}

export const fmt = {
  int: (n) => (n === null || n === undefined || Number.isNaN(n) ? "—" : Math.round(n).toLocaleString("en-US")),
  num(n, digits = 1) {
    if (n === null || n === undefined || Number.isNaN(n)) return "—";
    return Number(n).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  },
  pct: (x, digits = 1) => (x === null || x === undefined || Number.isNaN(x) ? "—" : `${(x * 100).toFixed(digits)}%`),
  money(value, currency = "") {
    if (value === null || value === undefined || value === "") return "—";
    const n = Number(value);
    const abs = Math.abs(n);
    let text;
    if (abs === 0) text = "0";
    else if (abs >= 1) text = n.toLocaleString("en-US", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
    else if (abs >= 0.01) text = n.toLocaleString("en-US", { maximumFractionDigits: 4 });
    else text = n.toPrecision(3).replace(/\.?0+e/, "e").replace(/(\.\d*?)0+$/, "$1");
    return currency ? `${text} ${currency}` : text;
  },
  bytes(b) {
    if (b === null || b === undefined) return "—";
    const gb = b / 1e9;
    return gb >= 1 ? `${fmt.num(gb, 1)} GB` : `${fmt.num(b / 1e6, 1)} MB`;
  },
};
