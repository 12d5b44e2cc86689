"""Answers from the shipped SmolLM2 model through the local provider: content, format, sampling."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from manxue.errors import InvalidParameters, InvalidRequest
from manxue.providers.local import LocalProvider
from tests.engine.conftest import chat, run

CAPITAL = "What is the capital of France?"


async def _stream(p: LocalProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    s = await p.stream(body, None)
    return [orjson.loads(x) async for x in s]


def _text(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_answers_paris(provider: LocalProvider) -> None:
    c = run(provider.complete(chat(CAPITAL, temperature=0, max_tokens=16)))
    data = c.data
    assert "Paris" in data["choices"][0]["message"]["content"]
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == "smollm2-local"
    assert data["choices"][0]["finish_reason"] in ("stop", "length")
    assert orjson.loads(c.body) == data
    u = data["usage"]
    assert u["prompt_tokens"] == u["prompt_cache_hit_tokens"] + u["prompt_cache_miss_tokens"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_temperature_zero_repeats(provider: LocalProvider) -> None:
    body = chat("Name three colors.", temperature=0, max_tokens=12)
    texts = [run(provider.complete(body)).data["choices"][0]["message"]["content"] for _ in range(3)]
    assert texts[1] == texts[2] and texts[0] == texts[1]


def test_seed_repeats(provider: LocalProvider) -> None:
    body = chat("Tell me a short story.", temperature=1.0, top_p=0.95, seed=1234, max_tokens=16)
    first = run(provider.complete(body)).data  # computed cold
    second = run(provider.complete(body)).data  # from the prefix cache
    assert second["usage"]["prompt_cache_hit_tokens"] > first["usage"]["prompt_cache_hit_tokens"]
    a = first["choices"][0]["message"]["content"]
    assert second["choices"][0]["message"]["content"] == a
    other = run(provider.complete({**body, "seed": 99, "temperature": 1.5}))
    assert other.data["choices"][0]["message"]["content"] != a


def test_stop_strings(provider: LocalProvider) -> None:
    base = chat(CAPITAL, temperature=0, max_tokens=16)
    full = run(provider.complete(base)).data["choices"][0]["message"]["content"]
    assert full.startswith("The capital of France is Paris")
    for stop, expect in (("Paris", "The capital of France is "),  # one whole token
                         ("Par", "The capital of France is "),  # inside a token
                         (["zzz", "France is"], "The capital of ")):  # across two tokens
        data = run(provider.complete({**base, "stop": stop})).data
        assert data["choices"][0]["message"]["content"] == expect
        assert data["choices"][0]["finish_reason"] == "stop"
        streamed = run(_stream(provider, {**base, "stop": stop, "stream": True}))
        assert _text(streamed) == expect


def test_max_tokens_gives_length(provider: LocalProvider) -> None:
    data = run(provider.complete(chat("Write a poem about the sea.", max_tokens=3, seed=1))).data
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 3
    data = run(provider.complete(chat("Write a poem.", max_completion_tokens=2, seed=1))).data
    assert data["usage"]["completion_tokens"] == 2


def test_logprobs_shape(provider: LocalProvider) -> None:
    body = chat(CAPITAL, temperature=0, max_tokens=5, logprobs=True, top_logprobs=3)
    data = run(provider.complete(body)).data
    content = data["choices"][0]["logprobs"]["content"]
    assert len(content) == data["usage"]["completion_tokens"] == 5
    for entry in content:
        assert set(entry) == {"token", "logprob", "bytes", "top_logprobs"}
        assert entry["logprob"] <= 0 and bytes(entry["bytes"]).decode() == entry["token"]
        tops = entry["top_logprobs"]
        assert len(tops) == 3 and tops[0]["token"] == entry["token"]  # greedy: the best one
        assert [t["logprob"] for t in tops] == sorted((t["logprob"] for t in tops), reverse=True)
    assert "".join(e["token"] for e in content) == data["choices"][0]["message"]["content"]
    plain = run(provider.complete(chat(CAPITAL, max_tokens=2)))
    assert plain.data["choices"][0]["logprobs"] is None


def test_stream_and_complete_agree(provider: LocalProvider) -> None:
    body = chat("Describe a cat.", temperature=0.8, seed=7, max_tokens=20)
    run(provider.complete(body))  # warm the prefix cache so both see the same state
    chunks = run(_stream(provider, {**body, "stream": True}))
    whole = run(provider.complete(body)).data
    assert _text(chunks) == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])


def test_bad_requests_are_client_errors(provider: LocalProvider) -> None:
    with pytest.raises(InvalidParameters):
        run(provider.complete(chat(CAPITAL, n=17)))
    with pytest.raises(InvalidParameters):
        run(provider.stream(chat(CAPITAL, top_logprobs=2), None))
    with pytest.raises(InvalidRequest) as err:
        run(provider.complete(chat("word " * 9000)))
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest):
        run(provider.complete({"model": "x", "messages": []}))


def test_describe(provider: LocalProvider) -> None:
    d = provider.describe()
    assert d["kind"] == "local" and d["path"].endswith(".gguf")
    assert d["quantization"] == "Q4_1" and d["tokenizer"] == "bpe" and d["chat_template"] == "gguf"
    assert d["context_length"] == 8192 and d["size_bytes"] > 50_000_000
    s = provider.stats()
    assert {"queue", "running", "prefix_cache_hit_tokens", "cached_prefixes"} <= set(s)


def test_reasoning_goes_to_reasoning_content(make_provider: Any) -> None:
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                "{% endfor %}<|im_start|>assistant\n<think>\n")
    p = make_provider(chat_template=template)
    body = chat("Think about the number 7.", temperature=0, max_tokens=8)
    data = run(p.complete(body)).data
    msg = data["choices"][0]["message"]
    assert msg["reasoning_content"] and msg["content"] == ""
    assert data["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8
    chunks = run(_stream(p, {**body, "stream": True}))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "")
                        for c in chunks if c["choices"])
    assert reasoning == msg["reasoning_content"]
