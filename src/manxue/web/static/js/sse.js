// Server-sent events from a fetch() body: the data of each event, comments (": keep-alive") skipped.

/**
 * Yield the `data` of every event in `body` (a ReadableStream of bytes), as text.
 * Lines starting with ":" are comments (DeepSeek and manxue send ": keep-alive" while a
 * model thinks) and are ignored, as are fields other than data.
 */
export async function* sseData(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (data.length) yield data.join("\n");
          data = [];
        } else if (line.startsWith(":")) {
          continue;
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        }
      }
    }
    if (data.length) yield data.join("\n");
  } finally {
    reader.releaseLock();
  }
}

/**
 * Parse an OpenAI chat stream: call onChunk(obj) for each JSON chunk; resolve when "[DONE]"
 * arrives (true) or the stream ends without it (false). An {"error": ...} event throws.
 */
export async function readChatStream(body, onChunk) {
  for await (const data of sseData(body)) {
    if (data === "[DONE]") return true;
    let obj;
    try { obj = JSON.parse(data); } catch { continue; }
    if (obj && obj.error) {
      const err = new Error(obj.error.message || "the stream ended with an error");
      err.code = obj.error.code;
      err.inStream = true;
      throw err;
    }
    onChunk(obj);
  }
  return false;
}
