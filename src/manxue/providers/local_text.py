"""The local engine's text completions (with `echo`, legacy `logprobs`, FIM) and embeddings,
in OpenAI's shapes; LocalProvider dispatches here by endpoint.

A text completion streams like chat, as `text_completion` chunks: the echoed prompt first
(with its scored log-probabilities when asked), then the generated text, then the finish and
a usage chunk. `max_tokens: 0` with `echo` only scores the prompt: the way to read a text's
log-likelihood under the model (what the verifier's likelihood check needs from a remote
reference).
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import numpy as np

from manxue.engine.embedder import Embedder
from manxue.engine.engine import Engine
from manxue.engine.handles import Finished, Handle, events_of
from manxue.engine.text_prompt import LegacyLogprobs, merge_logprobs, prepare_text
from manxue.errors import InvalidParameters
from manxue.protocol.usage import Usage

FirstEvents = Callable[[Handle], Awaitable[list[Any]]]


def _choice(text: str, logprobs: dict[str, Any] | None = None,
            finish: str | None = None) -> dict[str, Any]:
    return {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}


async def text_chunks(engine: Engine, body: dict[str, Any], model: str,
                      first_events: FirstEvents) -> AsyncGenerator[dict[str, Any], None]:
    request, tokens = prepare_text(engine, body)
    head = {"id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion",
            "created": int(time.time()), "model": model}
    legacy = body.get("logprobs")
    offsets = LegacyLogprobs()
    cached = 0
    if body.get("echo"):
        prompt = body.get("prompt")
        text = prompt if isinstance(prompt, str) and body.get("suffix") is None else \
            b"".join(engine.model.piece(t) for t in tokens).decode("utf-8", "replace")
        lp = None
        if legacy is not None:
            scored = await engine.score_tokens(tokens[:1], tokens[1:], top_logprobs=legacy)
            cached = scored.cached_tokens
            first = engine.model.piece(tokens[0]).decode("utf-8", "replace")
            lp = offsets.of_scored(first, scored)
        else:
            offsets.offset = len(text)
        yield {**head, "choices": [_choice(text, lp)]}
    if request is None:  # max_tokens 0: the prompt scored, nothing generated
        yield {**head, "choices": [_choice("", None, "length")]}
        yield {**head, "choices": [], "usage": Usage(len(tokens), 0, cached,
                                                     len(tokens) - cached).to_dict()}
        return
    handle = engine.submit(request)
    try:
        async for ev in events_of(handle, await first_events(handle)):
            if isinstance(ev, Finished):
                yield {**head, "choices": [_choice("", None, ev.reason)]}
                yield {**head, "choices": [], "usage": ev.usage.to_dict()}
                return
            lp = offsets.of_generated(ev.logprobs or []) if legacy is not None else None
            if ev.content or ev.logprobs:
                yield {**head, "choices": [_choice(ev.content, lp)]}
    finally:
        handle.cancel()


async def whole_text(chunks: AsyncGenerator[dict[str, Any], None]) -> dict[str, Any]:
    """The non-streamed answer, from the very chunks a stream relays."""
    head: dict[str, Any] = {}
    text: list[str] = []
    parts: list[dict[str, Any]] = []
    finish, usage = "stop", None
    try:
        async for chunk in chunks:
            head = head or chunk
            usage = chunk.get("usage", usage)
            for choice in chunk["choices"]:
                text.append(choice["text"])
                if choice.get("logprobs"):
                    parts.append(choice["logprobs"])
                finish = choice.get("finish_reason") or finish
    finally:
        await chunks.aclose()
    return {"id": head.get("id"), "object": "text_completion", "created": head.get("created"),
            "model": head.get("model"),
            "choices": [_choice("".join(text), merge_logprobs(parts), finish)], "usage": usage}


async def embeddings(embedder: Embedder, body: dict[str, Any], model: str) -> dict[str, Any]:
    vectors, tokens = await embedder.embed(body.get("input"))
    dims = body.get("dimensions")
    if dims is not None and vectors and dims != len(vectors[0]):
        raise InvalidParameters(f"this model's embeddings have {len(vectors[0])} dimensions; it "
                                "cannot shorten them: leave 'dimensions' out", param="dimensions")
    b64 = body.get("encoding_format") == "base64"
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(np.asarray(v, "<f4").tobytes()).decode() if b64 else v}
            for i, v in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
