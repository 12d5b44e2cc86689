"""Text completions, DeepSeek's FIM and embeddings, with the official `openai` SDK, relayed to
the emulated upstream and served by the local engine on the shipped model; metered on the one
usage path."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import openai
import pytest

from manxue.engine.default_model import default_model_path
from tests.helpers import UsageRecorder

SMALL = {"n_ctx": 1024, "n_parallel": 2, "max_queue": 0, "n_threads": 1}



# -- relayed to an upstream ---------------------------------------------------------------------

def test_completions_whole_and_streamed_are_relayed_and_settled_alike(gateway, upstream):
    rec = UsageRecorder.on(gateway)
    c = gateway.client()
    whole = c.completions.create(model="deepseek-chat", prompt="once upon a time", max_tokens=20)
    assert whole.object == "text_completion"
    assert whole.choices[0].text == "You said: once upon a time"
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="deepseek-chat", prompt="once upon a time", max_tokens=20, stream=True)
        if ch.choices)
    assert streamed == whole.choices[0].text
    assert [r.path for r in upstream.emu.received] == ["/v1/completions"] * 2
    assert upstream.emu.received[1].body["stream_options"] == {"include_usage": True}
    a, b = rec.outcomes
    assert a.usage == b.usage and a.usage is not None and a.usage.completion_tokens == 6
    assert a.completed and b.completed


def test_fim_goes_to_deepseeks_beta_path_with_its_suffix(gateway, upstream):
    r = httpx.post(gateway.url + "/beta/completions", timeout=20, json={
        "model": "deepseek-chat", "prompt": "def fib(a):", "suffix": "    return fib(a-1)",
        "max_tokens": 64})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["text"] == "after def fib(a): before     return fib(a-1)"
    sent = upstream.emu.received[-1]
    assert sent.path == "/beta/completions" and sent.body["suffix"] == "    return fib(a-1)"
    missing = httpx.post(gateway.url + "/beta/completions", timeout=20,
                         json={"model": "deepseek-chat", "prompt": "x"})
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "suffix"


def test_embeddings_are_relayed_and_billed_as_input_tokens(gateway, upstream):
    rec = UsageRecorder.on(gateway)
    out = gateway.client().embeddings.create(model="deepseek-chat",
                                             input=["one two three", "four five"])
    assert [d.index for d in out.data] == [0, 1] and len(out.data[0].embedding) == 8
    assert out.usage.prompt_tokens == 5
    assert upstream.emu.received[-1].path == "/v1/embeddings"
    [o] = rec.outcomes
    assert o.usage is not None and (o.usage.prompt_tokens, o.usage.completion_tokens) == (5, 0)


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/completions", {"model": "deepseek-chat"}, "prompt"),
    ("/v1/completions", {"model": "deepseek-chat", "prompt": "x", "max_tokens": 0}, "max_tokens"),
    ("/v1/completions", {"model": "deepseek-chat", "prompt": "x", "logprobs": 21}, "logprobs"),
    ("/v1/completions", {"model": "deepseek-chat", "prompt": ""}, "prompt"),
    ("/v1/embeddings", {"model": "deepseek-chat"}, "input"),
    ("/v1/embeddings", {"model": "deepseek-chat", "input": ["a", ""]}, "input"),
    ("/v1/embeddings", {"model": "deepseek-chat", "input": "a", "stream": True}, "stream"),
])
def test_bad_requests_get_clear_4xx(gateway, path, body, param):
    r = httpx.post(gateway.url + path, json=body, timeout=10)
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["param"] == param


# -- served by the local engine ----------------------------------------------------------------

@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    from manxue.server.app import build_app
    from manxue.settings import settings_from_dict
    from manxue.testing.loopback import LoopbackServer

    settings = settings_from_dict({
        "data_dir": str(tmp_path_factory.mktemp("completions-local")),
        "deployments": [{"name": "edge", "model": "smollm2", "kind": "local",
                         "path": str(default_model_path()), "options": SMALL}]})
    with LoopbackServer(build_app(settings)) as srv:
        yield openai.OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=60)


def test_local_text_completion_whole_equals_streamed(local):
    kw = {"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 8,
          "temperature": 0}
    whole = local.completions.create(**kw)  # type: ignore[call-overload]
    text = whole.choices[0].text
    assert text and whole.choices[0].finish_reason in ("stop", "length")
    streamed = "".join(ch.choices[0].text for ch in local.completions.create(**kw, stream=True)
                       if ch.choices)
    assert streamed == text
    assert whole.usage is not None and whole.usage.completion_tokens <= 8
    default = local.completions.create(model="smollm2", prompt="Count: 1, 2, 3,", temperature=0)
    assert default.usage is not None and default.usage.completion_tokens <= 16  # OpenAI's default


def test_local_echo_scores_the_prompt_like_the_engine(local):
    """max_tokens 0 + echo + logprobs: the prompt's log-likelihood (the verifier's use)."""
    out = local.completions.create(model="smollm2", prompt="The sky is blue and the grass is green.",
                                   max_tokens=0, echo=True, logprobs=2)
    choice = out.choices[0]
    assert choice.text == "The sky is blue and the grass is green."
    lp = choice.logprobs
    assert lp is not None and lp.token_logprobs is not None and lp.tokens is not None
    assert lp.token_logprobs[0] is None and all(v <= 0 for v in lp.token_logprobs[1:])
    assert "".join(lp.tokens) == choice.text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert lp.top_logprobs is not None and all(len(t) <= 2 for t in lp.top_logprobs[1:])
    assert out.usage is not None and out.usage.completion_tokens == 0
    assert out.usage.prompt_tokens == len(lp.tokens)
    # generation's own logprobs after the echoed prompt, offsets continuing
    gen = local.completions.create(model="smollm2", prompt="Hello", max_tokens=4, echo=True,
                                   logprobs=0, temperature=0).choices[0]
    assert gen.text.startswith("Hello") and gen.logprobs is not None
    assert "".join(gen.logprobs.tokens or []) == gen.text


def test_local_refuses_what_it_cannot_do_with_the_reason(local):
    with pytest.raises(openai.UnprocessableEntityError) as fim:
        local.completions.create(model="smollm2", prompt="def f():", suffix="  return 1")
    assert "fill-in-the-middle" in str(fim.value)
    with pytest.raises(openai.UnprocessableEntityError, match="one choice"):
        local.completions.create(model="smollm2", prompt="x", n=2)
    with pytest.raises(openai.UnprocessableEntityError, match="one prompt"):
        local.completions.create(model="smollm2", prompt=["a", "b"])


def test_local_embeddings_mean_pooled_normalised_and_metered(local):
    out = local.embeddings.create(model="smollm2", input=["a cat sat on the mat",
                                                         "a kitten sat on the rug",
                                                         "quarterly tax filing deadline"])
    vecs = [d.embedding for d in out.data]  # the SDK asked for base64 and decoded it
    assert len(vecs) == 3 and len(vecs[0]) == 576
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vecs)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2])
    assert out.usage.prompt_tokens >= 15 and out.usage.total_tokens == out.usage.prompt_tokens
    floats = local.embeddings.create(model="smollm2", input="a cat sat on the mat",
                                     encoding_format="float")
    assert max(abs(x - y) for x, y in zip(floats.data[0].embedding, vecs[0], strict=True)) < 1e-5
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions"):
        local.embeddings.create(model="smollm2", input="x", dimensions=64)


def test_local_engine_answers_the_responses_api(local):
    kw = {"model": "smollm2", "instructions": "You are a helpful assistant.",
          "input": "What is the capital of France?", "max_output_tokens": 12, "temperature": 0}
    whole = local.responses.create(**kw)  # type: ignore[call-overload]
    assert "Paris" in whole.output_text and whole.usage is not None
    with local.responses.stream(**kw) as stream:  # type: ignore[call-overload]
        final = stream.get_final_response()
    assert final.output_text == whole.output_text
    assert final.usage is not None and final.usage.output_tokens == whole.usage.output_tokens
    more = local.responses.create(model="smollm2", previous_response_id=whole.id,
                                  input="And of Italy?", max_output_tokens=12, temperature=0)
    assert more.status in ("completed", "incomplete") and more.output_text
