"""Fill-in-the-middle on the local engine, for a GGUF that declares FIM tokens: the prompt is
[BOS] FIM-prefix, the prompt's tokens, FIM-suffix, the suffix's tokens, FIM-middle, and the
answer is the middle. No shipped model declares FIM tokens, so the test writes a copy of the
shipped SmolLM2 whose metadata names three of its own tokens as the FIM tokens (gguf's
gguf_new_metadata, as a user would for a code model converted without them): the model is not
trained for FIM, so its text is not checked, only the path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import openai
import pytest

from tests.engine.conftest import local_gateway, smollm2_copy

FIM_IDS = (5, 6, 7)  # SmolLM2's <file_sep>, <filename>, <gh_stars>: special, not end-of-turn
SMALL = {"n_ctx": 1024, "n_parallel": 2, "max_queue": 0, "n_threads": 1, "prefix_cache": False}


@pytest.fixture(scope="module")
def fim_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pre, suf, mid = FIM_IDS
    return smollm2_copy(tmp_path_factory.mktemp("fim") / "smollm2-fim.gguf",
                        "--special-token-by-id", "fim_pre", str(pre),
                        "--special-token-by-id", "fim_suf", str(suf),
                        "--special-token-by-id", "fim_mid", str(mid))


@pytest.fixture(scope="module")
def coder(fim_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    yield from local_gateway("coder", fim_model, tmp_path_factory.mktemp("fim-gateway"), SMALL)


def test_the_engine_assembles_the_fim_prompt(fim_model: Path) -> None:
    from manxue.engine.engine import Engine
    from manxue.engine.options import EngineOptions
    from manxue.engine.text_prompt import fim_tokens, prompt_tokens

    engine = Engine(fim_model, EngineOptions(n_ctx=512, n_parallel=1, n_threads=1))
    try:
        assert fim_tokens(engine) == FIM_IDS
        tokens = prompt_tokens(engine, {"prompt": "def add(a, b):\n", "suffix": "\n    return c"})
        head = engine.model.tokenize("def add(a, b):\n", special=False)
        tail = engine.model.tokenize("\n    return c", special=False)
        bos = int(llama_cpp.llama_vocab_bos(engine.model.vocab))
        start = [bos] if engine.info.add_bos else []
        assert tokens == [*start, FIM_IDS[0], *head, FIM_IDS[1], *tail, FIM_IDS[2]]
    finally:
        engine.close()


def test_fim_completion_through_the_gateway(coder: openai.OpenAI) -> None:
    kw = {"model": "coder", "prompt": "def add(a, b):\n", "suffix": "\n    return c",
          "max_tokens": 6, "temperature": 0}
    whole = coder.completions.create(**kw)  # type: ignore[call-overload]
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and 0 < whole.usage.completion_tokens <= 6
    assert whole.usage.prompt_tokens >= 3 + 2  # the three FIM tokens, prompt and suffix
    chunks = coder.completions.create(**kw, stream=True)  # type: ignore[call-overload]
    streamed = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    assert streamed == whole.choices[0].text
    plain = coder.completions.create(model="coder", prompt="def add(a, b):\n", max_tokens=1)
    assert plain.usage is not None
    assert whole.usage.prompt_tokens > plain.usage.prompt_tokens  # the suffix and FIM tokens
