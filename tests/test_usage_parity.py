"""Streaming and non-streaming answers settle usage through one path, with equal results."""

from __future__ import annotations

import time

import httpx

from manxue.protocol.types import Outcome
from manxue.server.state import STATE_KEY
from manxue.testing.deepseek_emulator import Behavior


class Recorder:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)


def _recorder(gw) -> Recorder:
    rec = Recorder()
    gw.app[STATE_KEY].chat.sinks.append(rec)
    return rec


def test_stream_and_non_stream_record_the_same_usage(gateway, upstream):
    rec = _recorder(gateway)
    b = Behavior(reasoning="think it over", cache_hit_tokens=2)
    upstream.emu.push(b, b)
    c = gateway.client()
    msgs = [{"role": "user", "content": "same question"}]
    c.chat.completions.create(model="deepseek-chat", messages=msgs)
    list(c.chat.completions.create(model="deepseek-chat", messages=msgs, stream=True))
    whole, streamed = rec.outcomes
    assert whole.ctx.stream is False and streamed.ctx.stream is True
    assert whole.usage == streamed.usage
    assert whole.usage is not None and whole.usage.cache_hit_tokens == 2
    assert whole.usage.reasoning_tokens == 3
    assert whole.completed and streamed.completed
    assert whole.deployment == streamed.deployment == "primary"
    assert streamed.ttft is not None and streamed.ttft <= streamed.seconds


def test_failed_over_request_is_recorded_once_for_the_answering_deployment(make_gateway, upstreams):
    from tests.helpers import deployment

    a, b = upstreams[0], upstreams[1]
    gw = make_gateway([deployment(a, "a"), deployment(b, "b", priority=1)],
                      router={"backoff_base": 0.01})
    rec = _recorder(gw)
    a.emu.default = Behavior(status=503)
    list(gw.client().chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "x"}], stream=True))
    assert len(rec.outcomes) == 1
    assert rec.outcomes[0].deployment == "b" and rec.outcomes[0].attempts == 2


def test_disconnect_mid_stream_is_recorded_once_as_incomplete(gateway, upstream):
    rec = _recorder(gateway)
    upstream.emu.default = Behavior(chunks=40, chunk_delay=0.05, content=" ".join(["w"] * 40))
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=10) as r:
        next(r.iter_raw())
    deadline = time.monotonic() + 3
    while not rec.outcomes and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    assert len(rec.outcomes) == 1
    assert rec.outcomes[0].completed is False
