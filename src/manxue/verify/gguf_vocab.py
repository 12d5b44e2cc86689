"""A GGUF file's tokenizer and chat template, loaded without its weights (vocab_only).

The verifier uses it for candidate families that ship as GGUF files (SmolLM2, Gemma 3): exact
token counts, and the exact prompt an honest server builds from the file's own template.
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from typing import Any

import llama_cpp
from jinja2.sandbox import ImmutableSandboxedEnvironment

from manxue.engine.model_file import ensure_backend

_lock = threading.Lock()


class GgufVocab:
    def __init__(self, path: str | Path) -> None:
        ensure_backend()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        with _lock:
            model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise ValueError(f"{path}: llama.cpp could not read this file's vocabulary")
        self.path = str(path)
        self._model: Any = model
        self._vocab: Any = llama_cpp.llama_model_get_vocab(model)
        self.size = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        raw = llama_cpp.llama_model_chat_template(model, None)
        self.template: str | None = raw.decode("utf-8", "replace") if raw else None
        self.bos = self._piece(int(llama_cpp.llama_vocab_bos(self._vocab)))
        self.eos = self._piece(int(llama_cpp.llama_vocab_eos(self._vocab)))

    def _piece(self, token: int) -> str:
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(128)
        n = int(llama_cpp.llama_token_to_piece(self._vocab, token, buf, 128, 0, True))
        raw: bytes = buf.raw[:max(0, n)]
        return raw.decode("utf-8", "replace")

    def count(self, text: str, *, special: bool = False) -> int:
        raw = text.encode("utf-8")
        cap = len(raw) + 8
        arr = (llama_cpp.llama_token * cap)()
        n = int(llama_cpp.llama_tokenize(self._vocab, raw, len(raw), arr, cap, False, special))
        if n < 0:
            cap = -n
            arr = (llama_cpp.llama_token * cap)()
            n = int(llama_cpp.llama_tokenize(self._vocab, raw, len(raw), arr, cap, False, special))
        return n

    def prompt_tokens(self, content: str) -> int | None:
        """What an honest server using this file's template counts for one user message."""
        if self.template is None:
            return None
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        text = env.from_string(self.template).render(
            messages=[{"role": "user", "content": content}], add_generation_prompt=True,
            bos_token=self.bos, eos_token=self.eos, raise_exception=_raise)
        bos = 1 if self.add_bos and not (self.bos and text.startswith(self.bos)) else 0
        return self.count(text, special=True) + bos


def _raise(message: str) -> None:
    raise ValueError(message)
