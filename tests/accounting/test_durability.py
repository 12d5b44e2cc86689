"""The ledger loses nothing: SIGKILL the server under load, restart, count the rows."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import threading
import uuid
from pathlib import Path

import httpx

from manxue.testing.deepseek_emulator import Behavior
from tests.accounting.servers import cli, free_port, start_server, write_config
from tests.helpers import wait_until


def _rows_in_sql(db: Path) -> int:
    """Ledger rows the server has flushed to its SQLite file (read-only, beside the writer)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as c:
        return int(c.execute("SELECT count(*) FROM ledger").fetchone()[0])


def test_sigkill_under_load_keeps_exactly_one_row_per_delivered_answer(tmp_path, upstream):
    upstream.emu.default = Behavior(chunks=4, chunk_delay=0.01, cache_hit_tokens=1)
    # a flush every second; the kill comes once a flush has put rows in SQL and more answers
    # were delivered after it: some rows are in SQL and in the journal, the last ones only in
    # the journal (waiting for both, not a fixed time, leaves neither to chance)
    cfg = write_config(tmp_path / "manxue.toml", upstream.url, data_dir=tmp_path / "data",
                       flush_interval=1.0)
    key = json.loads(cli("keys", "create", "--tenant", "acme", "--balance", "100", "--json",
                         "--config", str(cfg)).stdout)["key"]
    port = free_port()
    proc = start_server(cfg, port, log=tmp_path / "server.log")
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    delivered: list[str] = []
    stop = threading.Event()

    def client(stream: bool) -> None:
        with httpx.Client(timeout=5, headers={"Authorization": f"Bearer {key}"}) as c:
            while not stop.is_set():
                rid = uuid.uuid4().hex
                body = {"model": "deepseek-chat", "stream": stream,
                        "messages": [{"role": "user", "content": "count me"}]}
                try:
                    r = c.post(url, json=body, headers={"X-Request-Id": rid})
                except httpx.TransportError:
                    continue
                complete = r.status_code == 200 and (
                    r.text.rstrip().endswith("data: [DONE]") if stream else bool(r.json()["choices"]))
                if complete:
                    delivered.append(rid)

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: _rows_in_sql(tmp_path / "data" / "manxue.db") > 0, timeout=30,
                   what="the first ledger flush")
        after_flush = len(delivered)
        wait_until(lambda: len(delivered) >= max(60, after_flush + 20), timeout=30,
                   what="answers delivered after the flush")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
    assert len(delivered) > 50

    proc = start_server(cfg, port, log=tmp_path / "server.log")  # replays the journal on start
    try:
        rows = json.loads(cli("usage", "--json", "--config", str(cfg)).stdout)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids))
    missing = set(delivered) - {r["client_request_id"] for r in rows}
    assert not missing, f"{len(missing)} delivered answers have no ledger row"
    assert "replayed" in (tmp_path / "server.log").read_text()
