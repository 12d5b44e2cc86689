"""The ledger loses nothing: SIGKILL the server under load, restart, count the rows."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid

import httpx

from manxue.testing.deepseek_emulator import Behavior
from tests.accounting.servers import cli, free_port, start_server, write_config


def test_sigkill_under_load_keeps_exactly_one_row_per_delivered_answer(tmp_path, upstream):
    upstream.emu.default = Behavior(chunks=4, chunk_delay=0.01, cache_hit_tokens=1)
    # flushes at about 1 s and 2 s, the kill at 2.5 s: some rows are in SQL and in the journal,
    # the last half second's only in the journal (0.2 s left it to chance on a slow machine)
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
    time.sleep(2.5)
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
