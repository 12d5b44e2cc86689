"""A journal that cannot be written (a full disk): no answer is asked of an upstream that could
not be billed, /ready says why, a stream already under way ends with an error event instead of
[DONE], nothing is charged for what was not recorded, and service resumes once a segment opens."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from typing import Any

import httpx

from manxue.accounting.meter import Meter
from manxue.accounting.money import to_nano
from manxue.server.state import STATE_KEY
from manxue.testing.deepseek_emulator import Behavior

NO_DISK_HAS_THIS = 2**40  # MiB per segment: posix_fallocate refuses it as a full disk would


def meter_of(billing: Any) -> Meter:
    meter = billing.gw.app[STATE_KEY].meter
    assert meter is not None
    return meter


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_full_disk_at_start_refuses_requests_before_any_upstream_call(make_billing: Any,
                                                                      upstream: Any) -> None:
    bill = make_billing(billing={"journal_segment_mb": NO_DISK_HAS_THIS})
    key = bill.create_key(balance="1")["key"]
    upstream.emu.received.clear()
    r = bill.chat(key)
    assert r.status_code == 503 and r.json()["error"]["code"] == "ledger_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    assert upstream.emu.received == []  # refused at admission: nothing to pay the upstream for
    ready = httpx.get(bill.gw.url + "/ready", timeout=10)
    assert ready.status_code == 503 and "journal cannot be written" in ready.json()["message"]

    meter_of(bill).writer.journal.segment_bytes = 1 << 20  # room again
    wait_for(lambda: meter_of(bill).writer.journal.failed is None)  # the flusher reopens it
    assert bill.chat(key).status_code == 200
    assert httpx.get(bill.gw.url + "/ready", timeout=10).status_code == 200
    assert [row["status"] for row in bill.rows()] == ["ok"]


def test_a_stream_that_cannot_be_recorded_ends_with_an_error_and_charges_nothing(
        make_billing: Any, upstream: Any) -> None:
    bill = make_billing()
    key = bill.create_key(balance="1", max_concurrency=1)
    upstream.emu.default = Behavior(chunks=3, chunk_delay=0.4)
    meter = meter_of(bill)

    async def fill_the_disk() -> None:  # the open segment is full and no new one fits
        journal = meter.writer.journal
        journal.segment_bytes = NO_DISK_HAS_THIS * 1024 * 1024
        seg = journal._open
        assert seg is not None
        seg.pos = seg.size

    events: list[str] = []
    with httpx.Client(timeout=30) as c, c.stream(
            "POST", bill.gw.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key['key']}"},
            json={"model": "deepseek-chat", "stream": True,
                  "messages": [{"role": "user", "content": "one two three"}]}) as r:
        assert r.status_code == 200
        bill.gw.server.call(fill_the_disk())  # under way: its last chunks are a second away
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] != "[DONE]" and "[DONE]" not in events
    assert '"ledger_unavailable"' in events[-1]
    assert any('"content"' in e for e in events[:-1])  # the text came, the end was withheld

    r = bill.chat(key["key"])  # refused while the journal cannot be written
    assert r.status_code == 503 and r.json()["error"]["code"] == "ledger_unavailable"
    meter.writer.journal.segment_bytes = 1 << 20
    wait_for(lambda: meter.writer.journal.failed is None)
    # the stream's reservation went back (max_concurrency=1 admits again) and nothing was spent
    assert bill.chat(key["key"]).status_code == 200
    [row] = bill.rows()  # the unrecorded stream has no row, and was not charged either
    assert row["stream"] is False
    assert bill.gw.server.call(meter.counters.spent(key["id"])) == to_nano(Decimal(row["cost"]))


def test_an_answer_that_cannot_be_recorded_is_withheld(make_billing: Any, upstream: Any) -> None:
    bill = make_billing()
    key = bill.create_key(balance="1", max_concurrency=1)
    upstream.emu.default = Behavior(first_byte_delay=0.8)
    meter = meter_of(bill)
    journal = meter.writer.journal

    async def fill_the_disk() -> None:
        journal.segment_bytes = NO_DISK_HAS_THIS * 1024 * 1024
        assert journal._open is not None
        journal._open.pos = journal._open.size

    with httpx.Client(timeout=30) as c:
        pending = c.build_request("POST", bill.gw.url + "/v1/chat/completions",
                                  headers={"Authorization": f"Bearer {key['key']}"},
                                  json={"model": "deepseek-chat",
                                        "messages": [{"role": "user", "content": "hi"}]})
        later = threading.Timer(0.3, lambda: bill.gw.server.call(fill_the_disk()))
        later.start()
        r = c.send(pending)
        later.join()
    assert r.status_code == 503 and r.json()["error"]["code"] == "ledger_unavailable"
    assert "choices" not in r.json()
    journal.segment_bytes = 1 << 20
    wait_for(lambda: journal.failed is None)
    upstream.emu.default = Behavior()
    assert bill.chat(key["key"]).status_code == 200  # the reservation went back
    assert len(bill.rows()) == 1
