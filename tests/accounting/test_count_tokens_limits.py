"""count_tokens is free and a long prompt takes a core to count: it counts bodies up to a
bound, one prompt at a time per worker, and one at a time per key."""

from __future__ import annotations

import threading

import httpx
import pytest

from manxue.server.routes.messages import COUNT_MAX_BYTES
from manxue.server.state import STATE_KEY
from tests.helpers import wait_until

ASK = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hello there"}]}


def _count(url: str, key: str, body: object) -> httpx.Response:
    return httpx.post(url + "/v1/messages/count_tokens", json=body, timeout=30,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"})


def test_a_body_past_the_bound_is_refused_before_it_is_counted(billing):
    key = billing.create_key()["key"]
    big = {**ASK, "messages": [{"role": "user", "content": "word " * (COUNT_MAX_BYTES // 5)}]}
    r = _count(billing.gw.url, key, big)
    assert r.status_code == 413, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "request_too_large"
    assert "shorter prompt" in r.json()["error"]["message"]
    assert _count(billing.gw.url, key, ASK).json()["input_tokens"] > 0


def test_one_count_at_a_time_per_key(billing):
    gw = billing.gw
    st = gw.app[STATE_KEY]
    key, other = billing.create_key()["key"], billing.create_key()["key"]
    gw.server.call(st.counting.acquire())  # a count is running: the next ones wait
    answers: dict[str, httpx.Response] = {}
    first = threading.Thread(target=lambda: answers.update(first=_count(gw.url, key, ASK)))
    first.start()
    wait_until(lambda: len(st.counting_keys) == 1)
    second = _count(gw.url, key, ASK)  # the same key, while its first count waits
    assert second.status_code == 429, second.text
    assert second.json()["error"]["type"] == "rate_limit_error"
    unread = httpx.post(gw.url + "/v1/messages/count_tokens", content=b"{not json", timeout=30,
                        headers={"x-api-key": key})
    assert unread.status_code == 429  # refused before its body is read or parsed
    waiting = threading.Thread(target=lambda: answers.update(other=_count(gw.url, other, ASK)))
    waiting.start()  # another key queues behind the running count instead
    wait_until(lambda: len(st.counting_keys) == 2)
    gw.server.loop.call_soon_threadsafe(st.counting.release)
    first.join(30)
    waiting.join(30)
    assert answers["first"].status_code == answers["other"].status_code == 200
    assert not st.counting_keys
    assert _count(gw.url, key, ASK).status_code == 200


def test_a_client_that_leaves_does_not_free_its_turn(billing):
    """A count cannot be stopped once its thread runs: a client that leaves keeps its key's
    mark and the worker's turn until the count ends, so leaving and asking again does not
    count more at once."""
    gw = billing.gw
    st = gw.app[STATE_KEY]
    key = billing.create_key()["key"]
    gw.server.call(st.counting.acquire())
    with pytest.raises(httpx.TimeoutException):
        httpx.post(gw.url + "/v1/messages/count_tokens", json=ASK, timeout=0.5,
                   headers={"x-api-key": key})
    assert len(st.counting_keys) == 1 and len(st.counting_tasks) == 1  # still waiting its turn
    assert _count(gw.url, key, ASK).status_code == 429
    gw.server.loop.call_soon_threadsafe(st.counting.release)
    wait_until(lambda: not st.counting_keys and not st.counting_tasks)
    assert not st.counting.locked()
    assert _count(gw.url, key, ASK).status_code == 200


def test_a_count_that_fails_midway_gives_everything_back(billing):
    """A body that does not parse, or names a model not served, fails inside the worker's
    turn: the error reaches the client, and the key's mark and the turn are given back."""
    gw = billing.gw
    st = gw.app[STATE_KEY]
    key = billing.create_key()["key"]
    bad = httpx.post(gw.url + "/v1/messages/count_tokens", content=b"{not json", timeout=30,
                     headers={"x-api-key": key})
    assert bad.status_code == 400 and bad.json()["type"] == "error"
    assert _count(gw.url, key, {**ASK, "model": "no-such-model"}).status_code == 404
    wait_until(lambda: not st.counting_keys and not st.counting_tasks)
    assert not st.counting.locked()
    assert _count(gw.url, key, ASK).status_code == 200
