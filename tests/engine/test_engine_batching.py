"""Continuous batching, the bounded queue and cancellation, on the shipped model."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from manxue.errors import UpstreamError
from manxue.providers.local import LocalProvider
from tests.engine.conftest import chat, run
from tests.helpers import wait_until, wait_until_async

NO_EOS = {"0": -100, "2": -100}  # SmolLM2's end tokens: answers run to max_tokens


def test_concurrent_requests_share_decode_steps(provider: LocalProvider) -> None:
    def body(i: int) -> dict[str, Any]:
        return chat(f"Count to {i + 10}.", temperature=0.7, seed=i, max_tokens=32, logit_bias=NO_EOS)

    async def one() -> float:
        t = time.perf_counter()
        await provider.complete(body(0))
        return time.perf_counter() - t

    async def four() -> tuple[float, list[Any]]:
        t = time.perf_counter()
        done = await asyncio.gather(*(provider.complete(body(i)) for i in range(4)))
        return time.perf_counter() - t, done

    single = run(one())
    before = provider.stats()
    wall, done = run(four())
    after = provider.stats()
    if wall >= 3 * single:  # a shared machine: one more try before judging the clock
        single = min(single, run(one()))
        wall = min(wall, run(four())[0])
    generated = sum(d.data["usage"]["completion_tokens"] for d in done)
    steps = after["steps"] - before["steps"]
    assert generated == 128
    assert steps < generated / 2, (steps, generated)  # four sequences per llama_decode call
    assert after["batched_steps"] - before["batched_steps"] >= 24
    assert after["max_batch_sequences"] >= 4
    assert wall < 3 * single, (wall, single)


def test_full_queue_answers_429(make_provider: Any) -> None:
    p = make_provider(n_parallel=1, max_queue=1)
    long = chat("Write a long essay.", max_tokens=400, logit_bias=NO_EOS)

    async def scenario() -> UpstreamError:
        running = asyncio.create_task(p.complete(long))
        queued = asyncio.create_task(p.complete(long))
        try:
            await wait_until_async(lambda: p.stats()["accepted"] == 2,
                                   what="the engine to take one request and queue the other")
            with pytest.raises(UpstreamError) as err:
                await p.complete(long)
        finally:
            running.cancel()
            queued.cancel()
            await asyncio.gather(running, queued, return_exceptions=True)
        return err.value

    err = run(scenario())
    assert err.status == 429 and err.retry_after == 1
    wait_until(lambda: p.stats()["accepted"] == 0, timeout=5)
    assert p.stats()["running"] == 0


def test_closing_a_stream_frees_its_slot(make_provider: Any) -> None:
    p = make_provider(n_parallel=1, max_queue=4)
    long = chat("Write a long essay.", max_tokens=1000, logit_bias=NO_EOS, stream=True)

    async def scenario() -> float:
        s = await p.stream(long, None)
        got = 0
        async for _ in s:
            got += 1
            if got == 3:
                break
        await s.aclose()
        t = time.perf_counter()
        data = (await p.complete(chat("Say hi.", max_tokens=4))).data
        assert data["usage"]["completion_tokens"] >= 1
        return time.perf_counter() - t

    waited = run(scenario())
    assert waited < 5  # the 1000-token answer was not finished first
    stats = p.stats()
    assert stats["running"] == 0 and stats["queue"] == 0
    assert stats["generated_tokens"] < 200


def test_engine_shutdown_breaks_streams_with_503(make_provider: Any) -> None:
    p = make_provider(n_parallel=1)
    long = chat("Write a long essay.", max_tokens=1000, logit_bias=NO_EOS, stream=True)

    async def scenario() -> UpstreamError:
        s = await p.stream(long, None)
        engine = p.engine
        assert engine is not None
        with pytest.raises(UpstreamError) as err:
            got = 0
            async for _ in s:
                got += 1
                if got == 2:
                    await asyncio.to_thread(engine.close)
        with pytest.raises(UpstreamError) as again:
            await p.complete(chat("Hi", max_tokens=2))
        assert again.value.status == 503
        return err.value

    err = run(scenario())
    assert err.status == 503
