"""The embedded inference engine: a GGUF model served in-process with continuous batching.

    engine = acquire_engine(path, options)        # one shared engine per model file
    request = engine.prepare(body)                # chat body -> tokens + sampling (4xx on bad input)
    handle = engine.submit(request)               # 429 when the wait queue is full
    events = await handle.next()                  # Delta ..., then Finished | Failed
    handle.cancel()                               # client gone: frees the sequence promptly
    scored = await engine.score(messages, answer) # log p of each answer token (scoring.py)
    release_engine(engine)
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from manxue.engine.chat_template import END_OF_TURN, ChatTemplate, detect
from manxue.engine.grammar import check_grammar
from manxue.engine.handles import Failed, Finished, GenerationRequest, Handle
from manxue.engine.llama_context import DecodeContext
from manxue.engine.model_file import ModelFile, ModelInfo
from manxue.engine.options import EngineOptions, OptionValue
from manxue.engine.prefix_cache import PrefixCache
from manxue.engine.reasoning import OPEN_TAG
from manxue.engine.sampling import SamplingParams
from manxue.engine.scheduler import Scheduler
from manxue.engine.scoring import (
    Scored,
    ScoreState,
    check_length,
    check_temperature,
    check_top_logprobs,
    continuation_tokens,
    scored,
    token_ids,
)
from manxue.engine.tool_formats import (
    arguments_as_text,
    markers,
    native_format,
    shows_tools,
    template_tools,
)
from manxue.engine.tools import TemplateTools, structured
from manxue.errors import InvalidRequest, ManxueError, UpstreamError

log = logging.getLogger("manxue.engine")

_MB = 1024 * 1024


class Engine:
    def __init__(self, path: str | Path, options: EngineOptions | None = None) -> None:
        self.options = opts = options or EngineOptions()
        self.model = ModelFile(path, n_gpu_layers=opts.n_gpu_layers, repack=opts.weight_repack)
        try:
            info = self.model.info
            detected = None if info.chat_template else detect(
                info.architecture, self.model.metadata, self._one_token)
            self.template = ChatTemplate.resolve(opts.chat_template, info.chat_template,
                                                 bos_token=info.bos_token, eos_token=info.eos_token,
                                                 detected=detected)
            self._end_turns_stop()
            self.tool_format = native_format(self.template.source) \
                if self.template.kind != "none" else None
            self.model.show_as_text(markers(self.tool_format))
            self.template_tools = self._template_tools()
            limits = [opts.n_ctx, info.context_length or opts.n_ctx]
            if opts.ctx_per_seq:
                limits.append(opts.ctx_per_seq)
            self.ctx_limit = min(limits)
            self.ctx = DecodeContext(self.model, opts)
        except BaseException:
            self.model.close()
            raise
        self.cache: PrefixCache | None = None
        if opts.prefix_cache:
            directory = None
            if opts.prefix_cache_dir:
                directory = Path(opts.prefix_cache_dir).expanduser() / self.fingerprint()
            self.cache = PrefixCache(ram_bytes=opts.prefix_cache_mb * _MB,
                                     min_tokens=opts.prefix_cache_min_tokens, directory=directory,
                                     disk_bytes=opts.prefix_cache_disk_mb * _MB)
        self.scheduler = Scheduler(self.model, self.ctx, n_parallel=opts.n_parallel,
                                   prefill_chunk=opts.prefill_chunk, max_queue=opts.max_queue,
                                   ctx_limit=self.ctx_limit, cache=self.cache)
        self._closed = False
        self._guard = threading.Lock()  # tokenizing never overlaps freeing the model
        self.scheduler.start()
        log.info("local engine: %s (%s, %s) ctx %d/seq, %d parallel, %d threads, "
                 "chat template: %s, tool calls: %s", self.model.path.name, info.quantization,
                 info.architecture, self.ctx_limit, opts.n_parallel, opts.threads,
                 self.template.kind, self.tool_format or "generic")
        if self.template.kind == "none":
            log.warning("%s has no chat template and its architecture (%s) names none: chat "
                        "requests are refused until the deployment sets chat_template (e.g. "
                        "--chat-template chatml); text completions and embeddings work",
                        self.model.path.name, info.architecture)

    @property
    def info(self) -> ModelInfo:
        return self.model.info

    def fingerprint(self) -> str:
        """Names saved prefix states: same file, same llama.cpp, same KV layout."""
        st = self.model.path.stat()
        parts = [str(self.model.path.resolve()), str(st.st_size), str(st.st_mtime_ns),
                 str(getattr(llama_cpp, "__version__", "")), f"fa={self.options.flash_attn}"]
        digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()
        return f"{self.model.path.stem}-{digest}"

    # -- requests ---------------------------------------------------------------------------

    def _one_token(self, text: str) -> bool:
        return len(self.model.tokenize(text, special=True)) == 1

    def _end_turns_stop(self) -> None:
        """Every end-of-turn marker the template in use writes ends generation, as the
        model's own end-of-generation tokens do (a named template on a file whose metadata
        does not mark it, say)."""
        if self.template.kind == "none":
            return
        for marker in set(END_OF_TURN.values()):
            if marker in self.template.source and self._one_token(marker):
                self.model.eog_mask[self.model.tokenize(marker, special=True)[0]] = True

    def _template_tools(self) -> TemplateTools:
        """How the template handles tools (tool_formats.py), read once at start."""
        marker = "manxue-probe-system"
        try:  # refused (Gemma 2's "System role not supported") or silently dropped: not taken
            takes_system = marker in self.render([{"role": "system", "content": marker},
                                                  {"role": "user", "content": "u"}])
        except ManxueError:
            takes_system = False
        if self.tool_format is None:
            return TemplateTools(takes_system=takes_system)
        probe = template_tools([{"name": "probe", "parameters": {"type": "object"}}])
        return TemplateTools(self.tool_format, shows_tools(self.template.source),
                             arguments_as_text(lambda messages: self.render(messages, probe)),
                             takes_system)

    def render(self, messages: list[Any], tools: list[dict[str, Any]] | None = None) -> str:
        extra = {"tools": tools} if tools else {}
        return self.template.render(messages, add_generation_prompt=True, **extra)

    def tokenize_prompt(self, text: str) -> list[int]:
        info = self.info
        add_bos = info.add_bos and not (info.bos_token and text.startswith(info.bos_token))
        return self.model.tokenize(text, add_bos=add_bos, special=True)

    def prepare(self, body: dict[str, Any]) -> GenerationRequest:
        """Check a chat-completion body and turn it into tokens and sampling parameters."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' must be a non-empty list", param="messages")
        form = structured(body, messages, self.template_tools)
        if form.grammar is not None:
            check_grammar(self.model.vocab, form.grammar, self.model.n_vocab)
        params = SamplingParams.from_body(body, self.model.n_vocab)
        text = self.render(form.messages, form.template_tools)
        tokens = self._guarded(lambda: self.tokenize_prompt(text))
        if not tokens:
            raise InvalidRequest("the prompt is empty", param="messages")
        if len(tokens) >= self.ctx_limit:
            raise InvalidRequest(
                f"the prompt is {len(tokens)} tokens; this model's context holds {self.ctx_limit} "
                "(prompt and answer together): shorten the messages",
                param="messages", code="context_length_exceeded")
        room = self.ctx_limit - len(tokens)
        max_new = min(params.max_tokens or room, room)
        return GenerationRequest(
            prompt=np.array(tokens, dtype=np.int32), params=params, max_new_tokens=max_new,
            reasoning=self.options.reasoning == "auto",
            starts_in_reasoning=text.rstrip().endswith(OPEN_TAG),
            grammar=form.grammar, tool_mode=form.tool_mode, tool_names=form.tool_names,
            tool_format=form.tool_format, tool_schemas=form.tool_schemas,
        )

    def _guarded(self, tokenize: Callable[[], list[int]]) -> list[int]:
        """Tokenize while the model is sure to stay loaded (UpstreamError 503 once closed)."""
        with self._guard:
            if self._closed:
                raise UpstreamError("local engine is closed", status=503, code="engine_down")
            return tokenize()

    async def score(self, messages: list[Any], continuation: str | Sequence[int], *,
                    top_logprobs: int = 0, temperature: float = 1.0, moments: bool = False
                    ) -> Scored:
        """Log-probabilities the model gives each token of `continuation` as the answer to
        `messages` (rendered exactly as for generation, assistant header included).

        `continuation` is text (tokenized alone, as generation would emit it: no BOS, special
        tokens read as plain text) or token ids. `temperature` scales the logits first (1: the
        model's own distribution, what generation reports as `logprobs`); `moments` adds each
        position's entropy and second moment. Runs on the engine thread, batched with
        generation; InvalidRequest/InvalidParameters for bad or over-long input.
        """
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest("'messages' must be a non-empty list", param="messages")
        text = self.render(messages)
        context = self._guarded(lambda: self.tokenize_prompt(text))
        return await self.score_tokens(context, continuation, top_logprobs=top_logprobs,
                                       temperature=temperature, moments=moments)

    async def score_tokens(self, context: Sequence[int], continuation: str | Sequence[int], *,
                           top_logprobs: int = 0, temperature: float = 1.0,
                           moments: bool = False) -> Scored:
        """Like `score`, after a context given as token ids (e.g. [BOS] + text for a plain
        perplexity, or a prompt's first token for prompt logprobs)."""
        k = check_top_logprobs(top_logprobs)
        temp = check_temperature(temperature)
        ctx_tokens = token_ids(context, self.model.n_vocab, "context")
        cont = self._guarded(lambda: continuation_tokens(self.model, continuation))
        check_length(len(ctx_tokens), len(cont), self.ctx_limit)
        state = ScoreState(len(ctx_tokens) - 1, np.array(cont, dtype=np.int32), k, temp,
                           bool(moments))
        hit = 0
        if cont:
            request = GenerationRequest(prompt=np.array(ctx_tokens + cont[:-1], dtype=np.int32),
                                        params=SamplingParams(), max_new_tokens=0, score=state)
            hit = min(await _finished(self.submit(request)), len(ctx_tokens))
        return scored(self.model, state, cont, len(ctx_tokens), hit)

    def submit(self, request: GenerationRequest, loop: asyncio.AbstractEventLoop | None = None
               ) -> Handle:
        """Queue a request (UpstreamError 429 when the wait queue is full)."""
        handle = Handle(request, loop or asyncio.get_running_loop())
        self.scheduler.submit(handle)
        return handle

    def stats(self) -> dict[str, Any]:
        return self.scheduler.snapshot()

    def close(self) -> None:
        with self._guard:
            if self._closed:
                return
            self._closed = True
        self.scheduler.stop()
        if self.cache is not None:
            self.cache.close()
        self.ctx.close()
        self.model.close()


async def _finished(handle: Handle) -> int:
    """Wait for a scoring request to end; its reused prefix tokens (the error if it failed)."""
    try:
        while True:
            for ev in await handle.next():
                if isinstance(ev, Failed):
                    raise ev.error
                if isinstance(ev, Finished):
                    if ev.reason != "scored":
                        raise UpstreamError("local engine: the KV cache could not hold this "
                                            "input", status=503, code="engine_full")
                    return ev.usage.cache_hit_tokens
    finally:
        handle.cancel()


# -- one shared engine per model file --------------------------------------------------------

_engines: dict[str, tuple[Engine, int]] = {}
_engines_lock = threading.Lock()


def acquire_engine(path: str | Path, options: dict[str, OptionValue] | EngineOptions | None = None,
                   *, where: str = "options") -> Engine:
    """The process's engine for this file, created on first use (later options are ignored)."""
    opts = options if isinstance(options, EngineOptions) else EngineOptions.from_mapping(
        dict(options or {}), where)
    key = str(Path(path).expanduser().resolve())
    with _engines_lock:
        found = _engines.get(key)
        if found is not None:
            engine, refs = found
            if engine.options != opts:
                log.warning("local engine for %s is shared; its first deployment's options apply",
                            key)
            _engines[key] = (engine, refs + 1)
            return engine
        engine = Engine(key, opts)
        _engines[key] = (engine, 1)
        return engine


def release_engine(engine: Engine) -> None:
    """Drop one reference; the last one closes the engine."""
    key = str(engine.model.path.resolve())
    with _engines_lock:
        found = _engines.get(key)
        if found is None or found[0] is not engine:
            engine.close()
            return
        refs = found[1] - 1
        if refs > 0:
            _engines[key] = (engine, refs)
            return
        del _engines[key]
    engine.close()


@atexit.register
def _close_all() -> None:
    """Stop engines still open at exit, so no decode runs while the interpreter tears down."""
    with _engines_lock:
        engines = [engine for engine, _ in _engines.values()]
        _engines.clear()
    for engine in engines:
        engine.close()
