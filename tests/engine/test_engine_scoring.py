"""Engine.score: log-probabilities of a given continuation, checked against generation's own."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from manxue.engine.engine import Engine
from manxue.engine.sampling import SamplingParams, SequenceSampler, sample_batch
from manxue.engine.scoring import Scored, row_stats
from manxue.errors import InvalidParameters, InvalidRequest
from manxue.providers.local import LocalProvider
from tests.engine.conftest import chat, run
from tests.helpers import wait_until, wait_until_async

NO_EOS = {"0": -100, "2": -100}  # SmolLM2's end tokens: answers run to max_tokens
QUESTION = "Describe the city of Paris in a few sentences."
NONSENSE = " Purple helicopter bananas negotiate quietly with seventeen staplers."


def _engine(p: LocalProvider) -> Engine:
    assert p.engine is not None
    return p.engine


def _messages(content: str = QUESTION) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = chat(content)["messages"]
    return messages


def _answer(p: LocalProvider, **extra: Any) -> tuple[str, list[dict[str, Any]]]:
    """Generate with logprobs on: the text and its per-token logprob entries."""
    body = chat(QUESTION, max_tokens=100, logprobs=True, top_logprobs=3, **extra)
    data = run(p.complete(body)).data
    return data["choices"][0]["message"]["content"], data["choices"][0]["logprobs"]["content"]


async def _generated(p: LocalProvider, n: int) -> None:
    """Wait until the engine has generated `n` tokens in all."""
    while True:
        if p.stats()["generated_tokens"] >= n:
            return
        await asyncio.sleep(0.002)


def _agrees(scored: Scored, entries: list[dict[str, Any]], tol: float = 1e-3) -> None:
    assert [t.encode() for t in scored.texts] == [bytes(e["bytes"]) for e in entries]
    assert np.allclose(scored.logprobs, [e["logprob"] for e in entries], atol=tol, rtol=0)
    assert scored.top_logprobs is not None
    for alts, e in zip(scored.top_logprobs, entries, strict=True):
        assert [a.text for a in alts] == [t["token"] for t in e["top_logprobs"]]
        assert np.allclose([a.logprob for a in alts], [t["logprob"] for t in e["top_logprobs"]],
                           atol=tol, rtol=0)


@pytest.mark.parametrize("sampling", [{"temperature": 0}, {"temperature": 0.9, "seed": 5}])
def test_scores_match_generated_logprobs(provider: LocalProvider, make_provider: Any,
                                         sampling: dict[str, Any]) -> None:
    text, entries = _answer(provider, **sampling)
    assert len(entries) >= 64  # more than one step's worth of scored rows
    scored = run(_engine(provider).score(_messages(), text, top_logprobs=3))
    _agrees(scored, entries)
    assert "".join(scored.texts) == text
    assert scored.total_logprob == pytest.approx(sum(e["logprob"] for e in entries), abs=1e-2)
    assert scored.context_tokens > 20 and scored.cached_tokens <= scored.context_tokens
    cold = run(_engine(make_provider(prefix_cache=False)).score(_messages(), text, top_logprobs=3))
    assert cold.cached_tokens == 0
    _agrees(cold, entries)  # all computed in one batch, nothing reused


def test_long_context_agrees_within_kernel_rounding(make_provider: Any) -> None:
    """Past 256 KV cells a lone decode step uses ggml's split-KV kernel, scoring does not:
    the values agree to kernel rounding only (docs/local-engine.md)."""
    p = make_provider(prefix_cache=False)
    long_system = ("You are a meticulous assistant for a shipping company. " * 30).strip()
    body = chat(QUESTION, system=long_system, temperature=0, max_tokens=60, logprobs=True)
    data = run(p.complete(body)).data["choices"][0]
    entries = data["logprobs"]["content"]
    scored = run(_engine(p).score(body["messages"], data["message"]["content"]))
    assert scored.context_tokens > 300
    assert [t.encode() for t in scored.texts] == [bytes(e["bytes"]) for e in entries]
    diff = np.abs(np.array(scored.logprobs) - [e["logprob"] for e in entries])
    assert diff.mean() < 0.1 and diff.max() < 0.6


def test_an_unlikely_answer_scores_much_lower(provider: LocalProvider) -> None:
    text, _ = _answer(provider, temperature=0)
    engine = _engine(provider)
    own = run(engine.score(_messages(), text))
    odd = run(engine.score(_messages(), NONSENSE))
    assert odd.total_logprob < own.total_logprob - 20
    assert odd.perplexity > 10 * own.perplexity
    assert all(lp <= 0 for lp in own.logprobs + odd.logprobs)


def test_temperature_and_moments(provider: LocalProvider) -> None:
    text, _ = _answer(provider, temperature=0)  # every token the model's first choice
    engine = _engine(provider)
    plain = run(engine.score(_messages(), text))
    assert plain.entropies is None and plain.second_moments is None and plain.temperature == 1
    sharp = run(engine.score(_messages(), text, temperature=0.5, moments=True))
    assert sharp.tokens == plain.tokens and sharp.temperature == 0.5
    assert all(s >= p - 1e-5 for s, p in zip(sharp.logprobs, plain.logprobs, strict=True))
    assert sharp.entropies is not None and sharp.second_moments is not None
    assert len(sharp.entropies) == len(sharp.second_moments) == len(sharp.tokens)
    for h, m2, lp in zip(sharp.entropies, sharp.second_moments, sharp.logprobs, strict=True):
        assert h >= 0 and m2 >= h * h - 1e-6  # Var[-log p] >= 0
        assert -lp <= h + 1e-4  # the first choice is no more surprising than average
    with pytest.raises(InvalidParameters):
        run(engine.score(_messages(), text, temperature=0))


def test_scoring_repeats_exactly(provider: LocalProvider) -> None:
    engine = _engine(provider)
    first = run(engine.score(_messages("Name a fruit."), " An apple, usually red or green."))
    again = run(engine.score(_messages("Name a fruit."), " An apple, usually red or green."))
    assert again.tokens == first.tokens and again.logprobs == first.logprobs
    assert again.total_logprob == first.total_logprob and again.top_logprobs is None


def test_scoring_alongside_generation(make_provider: Any) -> None:
    """Scores taken while a generation runs equal those taken alone, and the generation gives
    the same tokens and logprobs as alone. (Each score fits one step here; see the docs for
    what concurrent multi-step scoring can do to the last bits.)"""
    p = make_provider(n_parallel=4)
    engine = _engine(p)
    story = "Write a long story about a lighthouse."
    body = chat(story, temperature=0, max_tokens=80, logit_bias=NO_EOS, logprobs=True)
    alone = run(p.complete(body)).data["choices"][0]
    requests = [(_messages(story), alone["message"]["content"][:150]),
                (_messages("Name a fruit."), " An apple, usually red or green."),
                (_messages(), NONSENSE)]
    quiet = [run(engine.score(m, a, top_logprobs=2)) for m, a in requests]

    async def together() -> tuple[dict[str, Any], list[Scored]]:
        gen = asyncio.create_task(p.complete(body))
        await _generated(p, p.stats()["generated_tokens"] + 5)
        scores = [await engine.score(m, a, top_logprobs=2) for m, a in requests]
        assert not gen.done()
        choice: dict[str, Any] = (await gen).data["choices"][0]
        return choice, scores

    before = p.stats()
    busy, scores = run(together())
    after = p.stats()
    assert busy["message"]["content"] == alone["message"]["content"]
    assert busy["logprobs"] == alone["logprobs"]  # not one bit moved
    for s, q in zip(scores, quiet, strict=True):
        assert (s.tokens, s.logprobs, s.top_logprobs) == (q.tokens, q.logprobs, q.top_logprobs)
    assert after["scored_tokens"] - before["scored_tokens"] == sum(len(q.tokens) for q in quiet)
    assert after["batched_steps"] - before["batched_steps"] >= len(requests)


def test_a_swapped_out_score_resumes_with_the_same_numbers(make_provider: Any) -> None:
    p = make_provider(n_ctx=256, n_parallel=2, prefill_chunk=2, prefix_cache=False)
    engine = _engine(p)
    messages = _messages("Name a fruit.")
    answer = " An apple is a sweet fruit that grows on trees in many countries." * 6
    alone = run(engine.score(messages, answer))
    assert len(alone.tokens) >= 80
    long = chat("Write a long story.", temperature=0, max_tokens=190, logit_bias=NO_EOS)

    async def squeezed() -> Scored:
        gen = asyncio.create_task(p.complete(long))
        await _generated(p, 100)  # the score still fits, but not for long
        scored = await engine.score(messages, answer)
        await gen
        return scored

    scored = run(squeezed())
    assert p.stats()["preempted"] >= 1
    assert scored.tokens == alone.tokens and scored.logprobs == alone.logprobs


def test_bad_input_is_a_client_error(provider: LocalProvider) -> None:
    engine = _engine(provider)
    with pytest.raises(InvalidRequest) as err:
        run(engine.score(_messages(), "word " * 9000))
    assert err.value.code == "context_length_exceeded"
    with pytest.raises(InvalidRequest):
        run(engine.score([], "Paris."))
    with pytest.raises(InvalidParameters):
        run(engine.score(_messages(), "Paris.", top_logprobs=21))
    with pytest.raises(InvalidParameters):
        run(engine.score(_messages(), [1, engine.model.n_vocab]))
    with pytest.raises(InvalidParameters):
        run(engine.score_tokens([-1], "Paris."))
    with pytest.raises(InvalidRequest):
        run(engine.score_tokens([], "Paris."))
    assert run(engine.score(_messages(), " Paris.")).logprobs  # the engine is fine


def test_empty_continuation(provider: LocalProvider) -> None:
    empty = run(_engine(provider).score(_messages(), "", top_logprobs=2))
    assert empty.tokens == [] and empty.logprobs == [] and empty.texts == []
    assert empty.total_logprob == 0.0 and empty.top_logprobs == [] and empty.perplexity == 1.0
    assert empty.context_tokens > 0


def test_token_ids_and_prompt_logprobs(provider: LocalProvider) -> None:
    engine = _engine(provider)
    text_scored = run(engine.score(_messages(), " The capital is Paris."))
    by_ids = run(engine.score(_messages(), text_scored.tokens))
    assert by_ids.logprobs == text_scored.logprobs
    one = run(engine.score(_messages(), text_scored.tokens[:1], top_logprobs=1))
    assert one.logprobs == text_scored.logprobs[:1] and one.top_logprobs is not None
    prompt = engine.tokenize_prompt(engine.render(_messages()))
    echo = run(engine.score_tokens(prompt[:1], prompt[1:], top_logprobs=1))
    assert echo.tokens == prompt[1:] and echo.context_tokens == 1
    assert echo.top_logprobs is not None
    assert all(lp <= alts[0].logprob + 1e-6 for lp, alts in zip(echo.logprobs, echo.top_logprobs,
                                                                strict=True))


def test_cancelled_score_frees_its_sequence(make_provider: Any) -> None:
    p = make_provider(n_parallel=1, prefill_chunk=8)
    engine = _engine(p)

    scored = p.stats()["scored_tokens"]

    async def scenario() -> None:
        task = asyncio.create_task(engine.score(_messages(), " word" * 1000))
        await wait_until_async(lambda: p.stats()["scored_tokens"] > scored,
                               what="the engine to start scoring")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(scenario())
    wait_until(lambda: p.stats()["accepted"] == 0, timeout=5)
    assert p.stats()["scored_tokens"] < 1000


def test_row_stats_match_sampling() -> None:
    rows = np.random.default_rng(1).normal(size=(3, 500)).astype(np.float32) * 4
    picks = np.array([7, 0, 499], dtype=np.int32)
    got = row_stats(rows, picks, 4)
    for i in range(3):
        s = SequenceSampler(SamplingParams(temperature=0, logprobs=True, top_logprobs=4))
        (_,), (lp,) = sample_batch(rows[i : i + 1].copy(), [s])
        assert lp is not None
        assert [t for t, _ in lp.top] == got.top_ids[i].tolist()
        assert np.allclose([v for _, v in lp.top], got.top_values[i], atol=1e-6)
        exact = rows[i] - np.log(np.exp(rows[i].astype(np.float64)).sum())
        assert got.logprob[i] == pytest.approx(exact[picks[i]], abs=1e-4)


def test_row_stats_at_a_temperature_with_moments() -> None:
    rows = np.random.default_rng(2).normal(size=(2, 300)).astype(np.float32) * 3
    picks = np.array([5, 17], dtype=np.int32)
    got = row_stats(rows, picks, 0, temperature=0.7, moments=True)
    assert got.entropy is not None and got.second is not None
    for i in range(2):
        z = rows[i].astype(np.float64) / 0.7
        logp = z - np.log(np.exp(z - z.max()).sum()) - z.max()
        p = np.exp(logp)
        assert got.logprob[i] == pytest.approx(logp[picks[i]], abs=1e-4)
        assert got.entropy[i] == pytest.approx(-(p * logp).sum(), abs=1e-4)
        assert got.second[i] == pytest.approx((p * logp**2).sum(), abs=1e-3)
