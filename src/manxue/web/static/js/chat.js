// The chat page: streaming answers from /v1/chat/completions, conversations kept in localStorage.
import { ApiError, call, el, explain, getJson, keyField, saved, showError } from "./api.js";
import { renderMarkdown } from "./markdown.js";
import { readChatStream } from "./sse.js";

const $ = (id) => document.getElementById(id);
const ui = {
  list: $("conv-list"), messages: $("messages"), error: $("chat-error"), form: $("composer"),
  prompt: $("prompt"), send: $("send"), stop: $("stop"), regenerate: $("regenerate"),
  status: $("chat-status"), model: $("model"), modelStatus: $("model-status"),
  maxTokens: $("max-tokens"), temperature: $("temperature"), system: $("system"),
};
const MAX_CONVERSATIONS = 100;

const key = keyField({
  input: $("api-key"), save: $("save-key"), forget: $("forget-key"), status: $("key-status"),
  name: "apiKey", onChange: () => loadModels(),
});

let conversations = saved.json("conversations", []);
let current = conversations.find((c) => c.id === saved.get("currentConversation")) || null;
let running = null; // {controller, conv, msg}

function persist() {
  conversations.sort((a, b) => b.updated - a.updated);
  conversations = conversations.slice(0, MAX_CONVERSATIONS);
  saved.setJson("conversations", conversations);
  saved.set("currentConversation", current ? current.id : "");
}

// ---- options ----------------------------------------------------------------------------------
const options = saved.json("chatOptions", {});
if (options.maxTokens) ui.maxTokens.value = options.maxTokens;
if (options.temperature !== undefined) ui.temperature.value = options.temperature;
if (options.system) ui.system.value = options.system;
for (const input of [ui.maxTokens, ui.temperature, ui.system]) {
  input.addEventListener("change", () => saved.setJson("chatOptions", {
    maxTokens: ui.maxTokens.value, temperature: ui.temperature.value, system: ui.system.value,
  }));
}

// ---- models -----------------------------------------------------------------------------------
async function loadModels() {
  ui.modelStatus.textContent = "Loading models…";
  try {
    const body = await getJson("/v1/models", { key: key.get() });
    const ids = (body.data || []).map((m) => m.id);
    const want = current?.model || saved.get("model");
    ui.model.replaceChildren(...ids.map((id) => el("option", { value: id }, id)));
    if (want && ids.includes(want)) ui.model.value = want;
    ui.error.replaceChildren();
    ui.modelStatus.textContent = ids.length ? `${ids.length} model${ids.length > 1 ? "s" : ""} available to this key.` : "This key may use no model here.";
  } catch (err) {
    ui.model.replaceChildren();
    if (err instanceof ApiError && err.status === 401 && !key.get()) {
      ui.modelStatus.textContent = "Enter your API key to see the models.";
      return;
    }
    ui.modelStatus.textContent = explain(err).title;
    if (err instanceof ApiError && err.status === 401) showError(ui.error, err);
  }
}
ui.model.addEventListener("change", () => {
  saved.set("model", ui.model.value);
  if (current) { current.model = ui.model.value; persist(); }
});
$("reload-models").addEventListener("click", loadModels);

// ---- conversations ----------------------------------------------------------------------------
function newConversation() {
  const conv = { id: `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`,
    title: "New chat", model: ui.model.value, messages: [], updated: Date.now() };
  conversations.unshift(conv);
  return conv;
}

function renderList() {
  ui.list.replaceChildren(...conversations.map((c) => {
    const open = el("button", { type: "button", class: "open-conv", title: c.title }, c.title);
    open.addEventListener("click", () => openConversation(c.id));
    const del = el("button", { type: "button", class: "delete-conv", "aria-label": `Delete conversation “${c.title}”`, title: "Delete" }, "✕");
    del.addEventListener("click", () => deleteConversation(c.id));
    return el("li", { "aria-current": current && c.id === current.id ? "true" : null }, open, del);
  }));
}

function openConversation(id) {
  if (running) return;
  current = conversations.find((c) => c.id === id) || null;
  if (current?.model && [...ui.model.options].some((o) => o.value === current.model)) ui.model.value = current.model;
  ui.error.replaceChildren();
  persist();
  renderAll();
  ui.prompt.focus();
}

function deleteConversation(id) {
  if (running && running.conv.id === id) running.controller.abort();
  conversations = conversations.filter((c) => c.id !== id);
  if (current && current.id === id) current = null;
  persist();
  renderAll();
  ui.status.textContent = "Conversation deleted.";
}

$("new-chat").addEventListener("click", () => {
  if (running) return;
  current = null;
  ui.error.replaceChildren();
  persist();
  renderAll();
  ui.prompt.focus();
});

// ---- messages ---------------------------------------------------------------------------------
function metaText(m) {
  const parts = [];
  const u = m.usage;
  if (u) {
    parts.push(`${u.prompt_tokens} prompt tokens`);
    if (u.prompt_cache_hit_tokens) parts.push(`${u.prompt_cache_hit_tokens} from cache`);
    const reasoning = u.completion_tokens_details?.reasoning_tokens || u.reasoning_tokens;
    parts.push(`${u.completion_tokens} completion tokens${reasoning ? ` (${reasoning} reasoning)` : ""}`);
  }
  if (m.cost !== undefined && m.cost !== null) parts.push(`cost ${m.cost} ${m.currency || ""}`.trim());
  if (m.seconds) parts.push(`${m.seconds.toFixed(1)} s`);
  if (m.stopped) parts.push("stopped");
  if (m.incomplete) parts.push("incomplete: the answer broke off");
  return parts;
}

function messageNode(m) {
  if (m.role === "user") {
    return el("article", { class: "msg user", "aria-label": "You" }, el("div", { class: "who" }, "You"), el("div", { class: "content" }, m.content));
  }
  const node = el("article", { class: "msg assistant", "aria-label": "Answer" }, el("div", { class: "who" }, m.model || "Assistant"));
  const reasoning = el("details", { class: "reasoning", hidden: !m.reasoning }, el("summary", {}, "Reasoning"), el("div", { class: "reasoning-text" }));
  const content = el("div", { class: "content" });
  const meta = el("div", { class: "meta" });
  node.append(reasoning, content, meta);
  node._parts = { reasoning, reasoningText: reasoning.querySelector(".reasoning-text"), content, meta };
  fillAnswer(node, m);
  return node;
}

function fillAnswer(node, m) {
  const p = node._parts;
  p.reasoning.hidden = !m.reasoning;
  p.reasoningText.textContent = m.reasoning || "";
  renderMarkdown(p.content, m.content);
  p.meta.replaceChildren(...metaText(m).map((t) => el("span", {}, t)));
}

function renderMessages() {
  const msgs = current ? current.messages : [];
  ui.messages.replaceChildren(...msgs.map(messageNode));
  if (!msgs.length) ui.messages.append(el("p", { class: "hint" }, "Pick a model, type a message and press Enter."));
}

function renderAll() {
  renderList();
  renderMessages();
  updateButtons();
}

function updateButtons() {
  const busy = Boolean(running);
  ui.send.disabled = busy;
  ui.stop.hidden = !busy;
  const msgs = current ? current.messages : [];
  ui.regenerate.disabled = busy || !msgs.some((m) => m.role === "user");
}

// ---- sending ----------------------------------------------------------------------------------
function requestBody(conv) {
  const messages = [];
  if (ui.system.value.trim()) messages.push({ role: "system", content: ui.system.value.trim() });
  for (const m of conv.messages) {
    if (m.role === "user" || (m.role === "assistant" && m.content)) messages.push({ role: m.role, content: m.content });
  }
  const body = { model: ui.model.value, messages, stream: true, stream_options: { include_usage: true } };
  const max = parseInt(ui.maxTokens.value, 10);
  if (max > 0) body.max_tokens = max;
  const temp = parseFloat(ui.temperature.value);
  if (Number.isFinite(temp)) body.temperature = temp;
  return body;
}

async function lookupCost(requestId, msg) {
  if (!requestId) return;
  for (const wait of [0, 400, 1200]) {
    if (wait) await new Promise((r) => setTimeout(r, wait));
    try {
      const row = await getJson(`/v1/usage/${encodeURIComponent(requestId)}`, { key: key.get() });
      msg.cost = row.cost;
      msg.currency = row.currency;
      if (!msg.usage) {
        msg.usage = { prompt_tokens: row.prompt_tokens, completion_tokens: row.completion_tokens,
          prompt_cache_hit_tokens: row.cache_hit_tokens, reasoning_tokens: row.reasoning_tokens };
      }
      return;
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404 || err.code !== "request_not_found") return;
    }
  }
}

async function generate(conv) {
  if (!ui.model.value) {
    showError(ui.error, new Error("No model is selected: enter an API key and pick a model."));
    return;
  }
  ui.error.replaceChildren();
  const msg = { role: "assistant", model: ui.model.value, content: "", reasoning: "" };
  const body = requestBody(conv);
  conv.messages.push(msg);
  conv.model = ui.model.value;
  conv.updated = Date.now();
  const node = messageNode(msg);
  node.classList.add("streaming");
  node.setAttribute("aria-busy", "true");
  ui.messages.querySelector(":scope > p.hint")?.remove();
  ui.messages.append(node);
  node._parts.reasoning.open = true;
  const controller = new AbortController();
  running = { controller, conv, msg };
  updateButtons();
  ui.status.textContent = "Answering…";
  const started = performance.now();
  let chunks = 0;
  let queued = false;
  const paint = () => {
    queued = false;
    const atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
    if (node.isConnected) fillAnswer(node, msg);
    node.dataset.chunks = String(chunks);
    if (atBottom) window.scrollTo(0, document.body.scrollHeight);
  };
  let requestId = null;
  let failed = null;
  let complete = false;
  try {
    const response = await call("/v1/chat/completions", { key: key.get(), method: "POST", body, signal: controller.signal });
    requestId = response.headers.get("X-Request-Id");
    complete = await readChatStream(response.body, (chunk) => {
      chunks += 1;
      if (chunk.usage) msg.usage = chunk.usage;
      const delta = chunk.choices?.[0]?.delta;
      if (delta) {
        if (delta.reasoning_content) msg.reasoning += delta.reasoning_content;
        if (delta.content) msg.content += delta.content;
      }
      if (!queued) { queued = true; requestAnimationFrame(paint); }
    });
    if (!complete) failed = new Error("The answer ended before it was complete; regenerate to try again.");
  } catch (err) {
    if (err.name === "AbortError") msg.stopped = true;
    else failed = err;
  }
  msg.seconds = (performance.now() - started) / 1000;
  running = null;
  node.classList.remove("streaming");
  node.removeAttribute("aria-busy");
  if (failed && !msg.content && !msg.reasoning) {
    conv.messages.pop();
    node.remove();
    showError(ui.error, failed);
    ui.status.textContent = "";
  } else {
    if (failed) {
      msg.incomplete = true;
      showError(ui.error, failed);
    }
    if (msg.reasoning && !msg.content) node._parts.reasoning.open = true;
    else node._parts.reasoning.open = false;
    await lookupCost(requestId, msg);
    paint();
    ui.status.textContent = msg.stopped ? "Stopped." : `Answer complete${msg.usage ? `: ${msg.usage.completion_tokens} tokens` : ""}.`;
  }
  node.dataset.done = "true";
  persist();
  renderList();
  updateButtons();
}

function send(text) {
  if (running) return;
  if (!current) current = newConversation();
  if (!current.messages.length) current.title = text.replace(/\s+/g, " ").slice(0, 60);
  current.messages.push({ role: "user", content: text });
  current.updated = Date.now();
  persist();
  renderList();
  renderMessages();
  generate(current);
}

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text) { ui.prompt.focus(); return; }
  ui.prompt.value = "";
  send(text);
});
ui.prompt.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.form.requestSubmit();
  }
});
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && running) running.controller.abort();
});
ui.stop.addEventListener("click", () => {
  running?.controller.abort();
  ui.prompt.focus();
});
ui.regenerate.addEventListener("click", () => {
  if (running || !current) return;
  while (current.messages.length && current.messages.at(-1).role === "assistant") current.messages.pop();
  if (!current.messages.length) return;
  renderMessages();
  generate(current);
});

renderAll();
loadModels();
