"""Text completions on the engine: a raw prompt (no chat template), fill-in-the-middle with the
model's own FIM tokens, and OpenAI's legacy `logprobs` format.

    request, tokens = prepare_text(engine, body)   # request None: max_tokens 0 (score only)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import llama_cpp
import numpy as np

from manxue.engine.handles import GenerationRequest
from manxue.engine.sampling import MAX_TOP_LOGPROBS, SamplingParams
from manxue.engine.scoring import Scored
from manxue.errors import InvalidParameters, InvalidRequest

if TYPE_CHECKING:
    from manxue.engine.engine import Engine

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for text completions


def fim_tokens(engine: Engine) -> tuple[int, int, int] | None:
    """The model's fill-in-the-middle tokens (prefix, suffix, middle), when its GGUF declares
    them (code models: DeepSeek-Coder, Qwen2.5-Coder, CodeLlama, StarCoder...)."""
    v = engine.model.vocab
    ids = (int(llama_cpp.llama_vocab_fim_pre(v)), int(llama_cpp.llama_vocab_fim_suf(v)),
           int(llama_cpp.llama_vocab_fim_mid(v)))
    return None if min(ids) < 0 else ids


def _one_prompt(prompt: Any, n_vocab: int) -> str | list[int]:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool)
                                                   for t in prompt):
        bad = next((t for t in prompt if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise InvalidParameters(f"token id {bad} is not in this model's vocabulary "
                                    f"(0..{n_vocab - 1})", param="prompt")
        return list(prompt)
    raise InvalidParameters("the local engine answers one prompt per request (a string or a "
                            "list of token ids); send several requests", param="prompt")


def prompt_tokens(engine: Engine, body: dict[str, Any]) -> list[int]:
    prompt = _one_prompt(body.get("prompt"), engine.model.n_vocab)
    suffix = body.get("suffix")
    if suffix is None:
        tokens = engine.tokenize_prompt(prompt) if isinstance(prompt, str) else prompt
    else:
        fim = fim_tokens(engine)
        if fim is None:
            raise InvalidParameters(
                f"model {engine.info.name!r} declares no fill-in-the-middle tokens in its GGUF, "
                "so it cannot fill a gap: send the request without 'suffix', or serve a code "
                "model whose GGUF has FIM tokens", param="suffix", code="fim_unsupported")
        model = engine.model
        head = model.tokenize(prompt, special=False) if isinstance(prompt, str) else prompt
        tail = model.tokenize(suffix, special=False) if isinstance(suffix, str) else []
        bos = int(llama_cpp.llama_vocab_bos(model.vocab))
        start = [bos] if engine.info.add_bos and bos >= 0 else []
        tokens = [*start, fim[0], *head, fim[1], *tail, fim[2]]
    if not tokens:
        raise InvalidParameters("'prompt' is empty", param="prompt")
    if len(tokens) >= engine.ctx_limit:
        raise InvalidRequest(f"the prompt is {len(tokens)} tokens; this model's context holds "
                             f"{engine.ctx_limit} (prompt and answer together): shorten it",
                             param="prompt", code="context_length_exceeded")
    return tokens


def prepare_text(engine: Engine, body: dict[str, Any]) -> tuple[GenerationRequest | None, list[int]]:
    """The generation for a text-completion body (None when max_tokens is 0: the prompt is
    only scored, for `echo`), and the prompt's tokens."""
    for name in ("n", "best_of"):
        if body.get(name) not in (None, 1):
            raise InvalidParameters(f"the local engine answers with one choice only; set {name} "
                                    "to 1", param=name)
    tokens = prompt_tokens(engine, body)
    max_tokens = body.get("max_tokens")
    if max_tokens == 0:
        return None, tokens
    legacy = body.get("logprobs")
    chat = {k: v for k, v in body.items() if k not in ("prompt", "suffix", "echo", "logprobs")}
    chat["max_tokens"] = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    if legacy is not None:
        if not isinstance(legacy, int) or isinstance(legacy, bool) \
                or not 0 <= legacy <= MAX_TOP_LOGPROBS:
            raise InvalidParameters(f"'logprobs' is a number of alternatives, 0 to "
                                    f"{MAX_TOP_LOGPROBS}", param="logprobs")
        chat["logprobs"], chat["top_logprobs"] = True, legacy
    params = SamplingParams.from_body(chat, engine.model.n_vocab)
    room = engine.ctx_limit - len(tokens)
    return GenerationRequest(prompt=np.array(tokens, dtype=np.int32), params=params,
                             max_new_tokens=min(params.max_tokens or room, room),
                             reasoning=False), tokens


class LegacyLogprobs:
    """OpenAI's text-completion `logprobs` object, built piece by piece:
    {"tokens", "token_logprobs", "top_logprobs", "text_offset"}."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def of_scored(self, first: str, scored: Scored) -> dict[str, Any]:
        """A scored prompt: its first token has no log-probability (nothing precedes it)."""
        tokens = [first, *scored.texts]
        tops: list[dict[str, float] | None] = [None]
        for alts in scored.top_logprobs or [[] for _ in scored.texts]:
            tops.append({a.text: a.logprob for a in alts})
        return self._entry(tokens, [None, *scored.logprobs], tops)

    def of_generated(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """Generation's chat-format logprob entries."""
        return self._entry([e["token"] for e in entries], [e["logprob"] for e in entries],
                           [{t["token"]: t["logprob"] for t in e.get("top_logprobs") or []}
                            for e in entries])

    def _entry(self, tokens: list[str], lps: list[float | None],
               tops: list[dict[str, float] | None]) -> dict[str, Any]:
        offsets = []
        for t in tokens:
            offsets.append(self.offset)
            self.offset += len(t)
        return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops,
                "text_offset": offsets}


def merge_logprobs(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One logprobs object from a stream's pieces (for the whole answer)."""
    if not parts:
        return None
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [],
                                 "text_offset": []}
    for p in parts:
        for k in out:
            out[k].extend(p[k])
    return out
