"""Embeddings from a GGUF with llama.cpp's own pooling, batched in C++.

The embedder keeps a second llama.cpp context of the model file, opened with embeddings on at
the first request (a generation context cannot pool). The pooling is the model's own where its
GGUF declares one (`{arch}.pooling_type`: embedding models such as BGE or Nomic), mean over the
tokens otherwise (a chat model used for embeddings). Vectors are L2-normalised, as OpenAI's are.
One batch at a time per model file; the work runs in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from manxue.errors import InvalidParameters, InvalidRequest

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


class Embedder:
    def __init__(self, path: str | Path, *, n_ctx: int, n_threads: int | None,
                 metadata: dict[str, str]) -> None:
        self.path = str(path)
        arch = metadata.get("general.architecture", "")
        self.pooling = "model" if f"{arch}.pooling_type" in metadata else "mean"
        self._n_ctx = n_ctx
        self._n_threads = n_threads
        self._llama: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        import llama_cpp

        if self._llama is None:
            pooling = (llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if self.pooling == "model"
                       else llama_cpp.LLAMA_POOLING_TYPE_MEAN)
            self._llama = llama_cpp.Llama(
                model_path=self.path, embedding=True, n_ctx=self._n_ctx, n_batch=self._n_ctx,
                n_ubatch=self._n_ctx, pooling_type=pooling, n_threads=self._n_threads,
                verbose=False)
        return self._llama

    @property
    def dimensions(self) -> int:
        with self._lock:
            return int(self._open().n_embd())

    def _embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        with self._lock:
            llama = self._open()
            tokens = 0
            for i, text in enumerate(texts):
                n = len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=False))
                if n > self._n_ctx:
                    raise InvalidRequest(
                        f"input[{i}] is {n} tokens; this model embeds at most {self._n_ctx} at "
                        "once: split it", param="input", code="context_length_exceeded")
                tokens += n
            vectors = llama.embed(texts, normalize=True, truncate=False)
            return [list(map(float, v)) for v in vectors], tokens

    async def embed(self, inputs: Any) -> tuple[list[list[float]], int]:
        """The vectors of a string or a list of strings, and the tokens read."""
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t
                                                              for t in texts):
            raise InvalidParameters("the local engine embeds text: 'input' must be a non-empty "
                                    "string or a list of them (token ids are not accepted)",
                                    param="input")
        if len(texts) > MAX_INPUTS:
            raise InvalidParameters(f"at most {MAX_INPUTS} inputs per request", param="input")
        return await asyncio.to_thread(self._embed, texts)

    def close(self) -> None:
        with self._lock:
            llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
