// Markdown to safe HTML with highlighted code: marked, then DOMPurify, then highlight.js.
import { Marked } from "../vendor/marked.esm.js";
import hljs from "../vendor/highlight.min.js";
import "../vendor/purify.min.js";

const DOMPurify = globalThis.DOMPurify;
hljs.configure({ ignoreUnescapedHTML: true });

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

const marked = new Marked({
  gfm: true,
  breaks: false,
  renderer: {
    // A model's answer must not make the page fetch anything: images become links.
    image({ href, text }) {
      return `<a href="${escape(href)}">${escape(text || href)}</a>`;
    },
    // Raw HTML in an answer is shown as text, not interpreted.
    html({ text }) {
      return escape(text);
    },
  },
});

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
  }
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select", "iframe", "video", "audio", "source", "picture"],
  FORBID_ATTR: ["style", "srcset"],
};

/** Render `text` (Markdown) into `node`; code blocks are highlighted. */
export function renderMarkdown(node, text) {
  node.innerHTML = DOMPurify.sanitize(marked.parse(text || ""), PURIFY);
  for (const code of node.querySelectorAll("pre code")) {
    const lang = [...code.classList].find((c) => c.startsWith("language-"))?.slice(9);
    if (lang && !hljs.getLanguage(lang)) code.className = "";
    hljs.highlightElement(code);
  }
}
