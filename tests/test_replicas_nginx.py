"""Three replicas behind nginx, on one machine: three `manxue serve` processes on their own
ports, each with its own data directory, sharing one PostgreSQL database and one Redis, behind
an nginx that spreads requests round-robin (docs/deploy.md, "N replicas behind a load
balancer"). Through nginx:

- 200 concurrent requests on a balance worth 10 reservations: 10 are served, 190 get 402,
  and the balance ends at what it held less the ledger's rows, never below zero;
- a 5 RPM key gets exactly 5 answers of 15, whichever replicas they reach;
- a deployment added through one replica's admin API is served by the other two within the
  refresh interval;
- one replica SIGKILLed under load: `manxue ledger replay` of its journal leaves exactly one
  ledger row per answer a client received, and a second replay adds nothing.

And replicas started at the same moment on an empty database all come up.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from aiohttp import web
from sqlalchemy import select

from manxue.accounting.money import Rates, from_nano
from manxue.store.db import open_engine
from manxue.store.tables import ledger
from manxue.testing.deepseek_emulator import Behavior, DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer
from tests.accounting.conftest import PRICE_LIST, PRICES_TOML
from tests.accounting.servers import free_port
from tests.helpers import postgres_database, require_redis, wait_until

ADMIN = "admin-secret-for-replica-tests"
REFRESH = 0.5  # [billing] key_refresh_interval: keys and run-time deployments reach every replica
FLUSH = 0.25  # [billing] flush_interval
PRICES = (Decimal("0.07"), Decimal("0.27"), Decimal("1.10"))  # resale-usd's deepseek-chat
# the model a run-time deployment serves, priced by the same list as deepseek-chat
EXTRA_PRICES = """
[[list]]
id = "resale-extra"
currency = "USD"
source = "tests: the deployment added while serving"

[[list.entry]]
model = "extra-model"
hit = 0.07
miss = 0.27
output = 1.10
"""


def nginx_binary() -> str | None:
    """Debian installs nginx in /usr/sbin, which a non-root PATH may not hold."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


# ---- an upstream that can hold answers until told ------------------------------------------


class Gate:
    """Holds every request reaching the upstream while closed (before the emulator sees it),
    so that a test decides when admitted requests settle."""

    def __init__(self) -> None:
        self.event: asyncio.Event | None = None
        self.held = 0

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        event = self.event
        if event is not None and not event.is_set():
            self.held += 1
            await event.wait()
        return await handler(request)


async def _new_event() -> asyncio.Event:
    return asyncio.Event()


@dataclass
class Upstream:
    emu: DeepSeekEmulator
    server: LoopbackServer
    gate: Gate

    @classmethod
    def start(cls) -> Upstream:
        emu, gate = DeepSeekEmulator(), Gate()
        app = emu.app()
        app.middlewares.append(gate.middleware)
        return cls(emu, LoopbackServer(app).start(), gate)

    def close_gate(self) -> None:
        self.gate.held = 0
        self.gate.event = self.server.call(_new_event())

    def open_gate(self) -> None:
        event = self.gate.event
        if event is not None:
            self.server.loop.call_soon_threadsafe(event.set)


# ---- the replicas and nginx ---------------------------------------------------------------


@dataclass
class Replica:
    config: Path
    data_dir: Path
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx_url: str
    database_url: str
    upstream: Upstream
    extra_upstream: Upstream
    env: dict[str, str]
    engine: Any = None
    admin: httpx.Client = field(default_factory=lambda: httpx.Client(
        headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30))

    def create_key(self, **fields: Any) -> dict[str, Any]:
        """A key made through the first replica's admin API, once every replica accepts it."""
        fields.setdefault("tenant", "acme")
        r = self.admin.post(self.replicas[0].url + "/admin/keys", json=fields)
        assert r.status_code == 201, r.text
        key = r.json()
        for rep in self.replicas:
            if rep.proc is not None and rep.proc.poll() is None:
                wait_until(lambda rep=rep: _key_loaded(rep.url, key["key"]), timeout=15,
                           what=f"the key reload on {rep.addr}")
        return key

    def ledger_rows(self, key_id: str) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(select(ledger.c.request_id, ledger.c.client_request_id,
                                         ledger.c.cost_nano, ledger.c.status,
                                         ledger.c.cache_miss_tokens, ledger.c.completion_tokens)
                                  .where(ledger.c.key_id == key_id)))

    def balance(self, replica: Replica, key_id: str) -> Decimal:
        r = self.admin.get(replica.url + "/admin/keys")
        assert r.status_code == 200, r.text
        return Decimal(next(k["balance"] for k in r.json()["data"] if k["id"] == key_id))


def _key_loaded(url: str, key: str) -> bool:
    """GET /v1/models authenticates without being admitted (no limit is spent): the key is
    loaded once it is accepted while a made-up key is refused (not the open, keyless mode)."""
    return (httpx.get(url + "/v1/models", headers={"Authorization": f"Bearer {key}"},
                      timeout=5).status_code == 200
            and httpx.get(url + "/v1/models", headers={"Authorization": "Bearer sk-mx-nobody"},
                          timeout=5).status_code == 401)


def _write_config(path: Path, *, data_dir: Path, database_url: str, redis_url: str,
                  upstream_url: str, prices: list[Path]) -> Path:
    path.write_text(f"""data_dir = "{data_dir}"
database_url = "{database_url}"
redis_url = "{redis_url}"

[billing]
flush_interval = {FLUSH}
key_refresh_interval = {REFRESH}
default_price_list = "{PRICE_LIST}"
price_lists = [{", ".join(f'"{p}"' for p in prices)}]

[[deployments]]
name = "emu"
model = "deepseek-chat"
base_url = "{upstream_url}"
""")
    return path


def _start_replica(rep: Replica, env: dict[str, str]) -> None:
    with open(rep.log, "ab") as log:
        rep.proc = subprocess.Popen(
            [sys.executable, "-m", "manxue", "serve", "--config", str(rep.config),
             "--port", str(rep.port)], stdout=log, stderr=subprocess.STDOUT, env=env)


def _wait_healthy(rep: Replica) -> None:
    deadline = time.monotonic() + 60
    assert rep.proc is not None
    while time.monotonic() < deadline:
        if rep.proc.poll() is not None:
            raise AssertionError(f"replica on {rep.addr} exited with {rep.proc.returncode}:\n"
                                 + rep.log.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(rep.url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"replica on {rep.addr} did not start:\n"
                         + rep.log.read_text(errors="replace")[-3000:])


def _nginx_conf(tmp: Path, port: int, replicas: list[Replica]) -> Path:
    for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir(exist_ok=True)
    # as root, nginx would hand its workers to an unprivileged user that cannot reach tmp
    user = "user root;\n" if os.geteuid() == 0 else ""
    servers = "\n".join(f"        server {r.addr} max_fails=1 fail_timeout=30s;"
                        for r in replicas)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""{user}daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{
    worker_connections 2048;
}}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;

    upstream manxue {{
{servers}
        keepalive 64;
    }}

    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://manxue;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
            proxy_read_timeout 60s;
            add_header X-Upstream-Addr $upstream_addr always;
        }}
    }}
}}
""")
    return conf


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nginx = nginx_binary()
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx; .ci/run does)")
    redis_url = require_redis()
    namespace = f"test-replicas-{uuid.uuid4().hex[:8]}"
    tmp = tmp_path_factory.mktemp("replicas")
    upstream, extra = Upstream.start(), Upstream.start()
    prices = [tmp / "prices.toml", tmp / "extra-prices.toml"]
    prices[0].write_text(PRICES_TOML)
    prices[1].write_text(EXTRA_PRICES)
    env = {**os.environ, "MANXUE_ADMIN_KEY": ADMIN, "MANXUE_REDIS_NAMESPACE": namespace,
           "PYTHONUNBUFFERED": "1"}
    replicas: list[Replica] = []
    nginx_proc: subprocess.Popen[bytes] | None = None
    engine = None
    try:
        with postgres_database("manxue_replicas") as database_url:
            for i in range(3):
                data_dir = tmp / f"replica{i}"
                cfg = _write_config(tmp / f"replica{i}.toml", data_dir=data_dir,
                                    database_url=database_url, redis_url=redis_url,
                                    upstream_url=upstream.server.url, prices=prices)
                replicas.append(Replica(cfg, data_dir, free_port(), tmp / f"replica{i}.log"))
            # the first start applies the migrations to the empty database; the other two
            # start together once it has
            _start_replica(replicas[0], env)
            _wait_healthy(replicas[0])
            for rep in replicas[1:]:
                _start_replica(rep, env)
            for rep in replicas[1:]:
                _wait_healthy(rep)

            port = free_port()
            conf = _nginx_conf(tmp, port, replicas)
            nginx_proc = subprocess.Popen([nginx, "-p", str(tmp), "-e", str(tmp / "error.log"),
                                           "-c", str(conf)],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            nginx_url = f"http://127.0.0.1:{port}"

            def nginx_up() -> bool:
                assert nginx_proc is not None
                if nginx_proc.poll() is not None:
                    out = nginx_proc.stdout.read().decode() if nginx_proc.stdout else ""
                    raise AssertionError(f"nginx exited with {nginx_proc.returncode}: {out}"
                                         + (tmp / "error.log").read_text())
                try:
                    return httpx.get(nginx_url + "/health", timeout=1).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(nginx_up, timeout=15, what="nginx")
            engine = open_engine(database_url, migrate=False)
            yield Cluster(replicas, nginx_url, database_url, upstream, extra, env, engine)
    finally:
        if nginx_proc is not None:
            nginx_proc.terminate()
            try:
                nginx_proc.wait(10)
            except subprocess.TimeoutExpired:
                nginx_proc.kill()
                nginx_proc.wait()
        for rep in replicas:
            if rep.proc is not None and rep.proc.poll() is None:
                rep.proc.send_signal(signal.SIGTERM)
        for rep in replicas:
            if rep.proc is not None:
                try:
                    rep.proc.wait(15)
                except subprocess.TimeoutExpired:
                    rep.proc.kill()
                    rep.proc.wait()
        if engine is not None:
            engine.dispose()
        for up in (upstream, extra):
            up.open_gate()
            up.server.stop()
        r = redis.Redis.from_url(redis_url)
        for k in r.scan_iter(f"{namespace}:*"):
            r.delete(k)
        r.close()


def _served_by(responses: list[httpx.Response]) -> set[str]:
    return {r.headers.get("X-Upstream-Addr", "") for r in responses}


# ---- a. one balance --------------------------------------------------------------------------


def test_a_balance_worth_ten_requests_serves_ten_of_200_concurrent(cluster: Cluster) -> None:
    body = orjson.dumps({"model": "deepseek-chat", "max_tokens": 10,
                         "messages": [{"role": "user", "content": "hello there"}]})
    rates = Rates.of(*PRICES)
    # admission reserves the largest possible cost: every body byte a cache-miss input token,
    # plus max_tokens of output, rounded up
    reserve = rates.ceil_nano(len(body), 10)
    # the emulator counts words, and 4 more per message: 2 + 4 in, "You said: hello there" out
    actual = rates.cost_nano(0, 6, 4)
    start = from_nano(10 * reserve)
    key = cluster.create_key(balance=str(start))
    headers = {"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"}
    up = cluster.upstream
    up.emu.reset()
    up.close_gate()  # admitted requests wait at the upstream: none settles during the burst

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
        async with httpx.AsyncClient(timeout=60, limits=limits) as c:
            tasks = [asyncio.ensure_future(c.post(cluster.nginx_url + "/v1/chat/completions",
                                                  content=body, headers=headers))
                     for _ in range(200)]
            deadline = time.monotonic() + 40
            # every request is answered (refused) or held at the upstream (admitted)
            while sum(t.done() for t in tasks) + up.gate.held < 200:
                assert time.monotonic() < deadline, "the burst did not settle into refusals"
                await asyncio.sleep(0.02)
            up.open_gate()
            return list(await asyncio.gather(*tasks))

    try:
        responses = asyncio.run(burst())
    finally:
        up.open_gate()
        up.gate.event = None
    codes = [r.status_code for r in responses]
    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 402]
    assert len(served) + len(refused) == 200, sorted(set(codes))
    # the hard bound: the n-th admission needed a whole reservation left after the n-1 before
    # it, even had they all settled at their actual cost first
    bound = (10 * reserve - reserve) // actual + 1
    assert len(served) <= bound
    # none settled during the burst, so exactly the 10 reservations the balance covers
    assert len(served) == 10, f"{len(served)} served on a balance worth 10 reservations"
    # whichever replica admits first takes the reservations; every one refused past them
    assert len(_served_by(refused)) == 3, "every replica refused some"
    for r in refused:
        err = r.json()["error"]
        assert err["type"] == "insufficient_quota" and err["code"] == "insufficient_balance"
        assert "insufficient balance" in err["message"]

    ids = {r.headers["X-Request-Id"] for r in served}
    rows: list[Any] = []

    def flushed() -> bool:
        rows[:] = cluster.ledger_rows(key["id"])
        return len(rows) >= len(served)

    wait_until(flushed, timeout=15, what="every replica's ledger flush")
    assert {r.request_id for r in rows} == ids and len(rows) == 10
    billed = sum(r.cost_nano for r in rows)
    assert [(r.cache_miss_tokens, r.completion_tokens, r.cost_nano) for r in rows] \
        == [(6, 4, actual)] * 10
    for rep in cluster.replicas:  # every replica reports the same balance
        balance = cluster.balance(rep, key["id"])
        assert balance == start - from_nano(billed) >= 0
    print(f"\n[a] reservation {from_nano(reserve)} USD, actual cost {from_nano(actual)} USD; "
          f"balance {start}: {len(served)} served (hard bound {bound}), {len(refused)} refused "
          f"402; {len(rows)} ledger rows billing {from_nano(billed)}; final balance "
          f"{start - from_nano(billed)}; served by {sorted(_served_by(served))}")


# ---- b. one RPM limit --------------------------------------------------------------------


def test_b_one_rpm_limit_across_replicas(cluster: Cluster) -> None:
    cluster.upstream.emu.reset()
    key = cluster.create_key(rpm=5)
    responses = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key['key']}"}) as c:
        for _ in range(15):
            responses.append(c.post(cluster.nginx_url + "/v1/chat/completions", json={
                "model": "deepseek-chat", "messages": [{"role": "user", "content": "x"}]}))
    codes = [r.status_code for r in responses]
    assert codes == [200] * 5 + [429] * 10, codes
    assert len(_served_by(responses)) == 3, "round robin reached every replica"
    assert len(_served_by(responses[:5])) == 3, "each replica served some of the five"
    for r in responses[5:]:
        assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.headers["Retry-After"]
    print(f"\n[b] rpm=5: {codes.count(200)} served, {codes.count(429)} refused 429, "
          f"from {sorted(_served_by(responses))}")


# ---- c. run-time deployments ----------------------------------------------------------------


def test_c_a_deployment_added_on_one_replica_is_served_by_the_others(cluster: Cluster) -> None:
    extra = cluster.extra_upstream
    extra.emu.reset()
    key = cluster.create_key(price_list="resale-extra")
    auth = {"Authorization": f"Bearer {key['key']}"}
    first, others = cluster.replicas[0], cluster.replicas[1:]

    def models(rep: Replica) -> list[str]:
        r = httpx.get(rep.url + "/v1/models", headers=auth, timeout=5)
        return [m["id"] for m in r.json()["data"]]

    assert all("extra-model" not in models(rep) for rep in cluster.replicas)
    r = cluster.admin.post(first.url + "/admin/deployments", json={
        "name": "extra", "model": "extra-model", "kind": "openai",
        "base_url": extra.server.url, "upstream_model": "deepseek-chat"})
    added = time.monotonic()
    assert r.status_code == 201, r.text
    assert "extra-model" in models(first)  # at once where it was added
    seen: dict[str, float] = {}

    def everywhere() -> bool:
        for rep in others:
            if rep.addr not in seen and "extra-model" in models(rep):
                seen[rep.addr] = time.monotonic() - added
        return len(seen) == len(others)

    wait_until(everywhere, timeout=10, interval=0.01, what="the deployment on the other replicas")
    # one refresh interval, plus the time to read the table on a loaded machine
    assert max(seen.values()) <= REFRESH + 1.0, seen
    for rep in others:
        answer = httpx.post(rep.url + "/v1/chat/completions", headers=auth, timeout=10, json={
            "model": "extra-model", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
    assert len(extra.emu.received) == 2, "both answers came from the added deployment"
    through = [httpx.post(cluster.nginx_url + "/v1/chat/completions", headers=auth, timeout=10,
                          json={"model": "extra-model",
                                "messages": [{"role": "user", "content": "hi"}]})
               for _ in range(3)]
    assert [a.status_code for a in through] == [200] * 3
    assert len(_served_by(through)) == 3
    print(f"\n[c] added on {first.addr}; served by the others after "
          f"{', '.join(f'{a}: {s:.2f} s' for a, s in sorted(seen.items()))} "
          f"(refresh interval {REFRESH} s)")


# ---- d. a replica killed under load -------------------------------------------------------


def test_d_a_killed_replicas_journal_replays_each_answer_once(cluster: Cluster) -> None:
    up = cluster.upstream
    up.emu.reset()
    up.emu.default = Behavior(chunks=4, chunk_delay=0.005)
    key = cluster.create_key(balance="100")
    victim = cluster.replicas[2]
    assert victim.proc is not None
    delivered: dict[str, tuple[str, str, float]] = {}  # client id -> (request id, replica, when)
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []
    cut_off: list[str] = []  # connections the kill broke (a stream cut mid-answer)

    def client(stream: bool) -> None:
        with httpx.Client(timeout=20, headers={"Authorization": f"Bearer {key['key']}"}) as c:
            while not stop.is_set():
                cid = uuid.uuid4().hex
                try:
                    r = c.post(cluster.nginx_url + "/v1/chat/completions",
                               headers={"X-Client-Request-Id": cid},
                               json={"model": "deepseek-chat", "stream": stream,
                                     "messages": [{"role": "user", "content": "count me"}]})
                except httpx.TransportError as exc:
                    cut_off.append(repr(exc))
                    continue
                complete = r.status_code == 200 and (
                    r.text.rstrip().endswith("data: [DONE]") if stream
                    else bool(r.json().get("choices")))
                if complete:
                    with lock:
                        delivered[cid] = (r.headers["X-Request-Id"],
                                          r.headers.get("X-Upstream-Addr", ""), time.monotonic())
                elif r.status_code != 502:  # 502: nginx lost the killed replica mid-answer
                    failures.append(f"{r.status_code} {r.text[:200]}")

    def by_victim() -> int:
        with lock:
            return sum(1 for _, addr, _ in delivered.values() if addr == victim.addr)

    threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        # the kill comes once a flush has put some of the victim's answers in SQL and more
        # were delivered after it: some of its rows are in SQL and in the journal, the last
        # ones most likely only in the journal
        def victim_flushed() -> bool:
            with lock:
                mine = {cid for cid, (_, addr, _) in delivered.items() if addr == victim.addr}
            return bool(mine & {r.client_request_id for r in cluster.ledger_rows(key["id"])})

        wait_until(victim_flushed, timeout=30, interval=0.05, what="a flush by the victim")
        before_kill = by_victim()
        wait_until(lambda: by_victim() >= before_kill + 20, timeout=30,
                   what="answers from the victim after its flush")
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait()
        killed = time.monotonic()
        killed_at = len(delivered)
        wait_until(lambda: len(delivered) >= killed_at + 30, timeout=30,
                   what="answers from the two replicas left")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures, failures[:5]
    from_victim = {cid for cid, (_, addr, _) in delivered.items() if addr == victim.addr}
    victim_for = killed - min(delivered[cid][2] for cid in from_victim)

    # the replicas still running flush their own rows
    def live_rows_flushed() -> bool:
        have = {r.client_request_id for r in cluster.ledger_rows(key["id"])}
        return set(delivered) - from_victim <= have

    wait_until(live_rows_flushed, timeout=15, what="the live replicas' ledger flush")
    before = {r.client_request_id for r in cluster.ledger_rows(key["id"])}
    lost_until_replay = from_victim - before

    config = cluster.replicas[0].config  # from anywhere that reaches the database
    journal = victim.data_dir / "journal"
    replay = [sys.executable, "-m", "manxue", "ledger", "replay", str(journal),
              "--config", str(config)]
    first = subprocess.run([*replay, "--keep"], capture_output=True, text=True, timeout=60,
                           env=cluster.env)
    assert first.returncode == 0, first.stderr
    rows = cluster.ledger_rows(key["id"])
    by_client: dict[str, list[str]] = {}
    for r in rows:
        by_client.setdefault(r.client_request_id, []).append(r.request_id)
    lost = [cid for cid in delivered if cid not in by_client]
    doubled = {cid: ids for cid, ids in by_client.items() if len(ids) > 1}
    assert not lost, f"{len(lost)} delivered answers have no ledger row after the replay"
    assert not doubled, f"{len(doubled)} requests have more than one ledger row: {doubled}"
    wrong = [cid for cid, (rid, _, _) in delivered.items() if by_client[cid] != [rid]]
    assert not wrong, "a row's request id is not the one the answer carried"

    second = subprocess.run(replay, capture_output=True, text=True, timeout=60, env=cluster.env)
    assert second.returncode == 0, second.stderr
    assert ", 0 new in the ledger," in second.stdout, second.stdout
    assert len(cluster.ledger_rows(key["id"])) == len(rows)
    third = subprocess.run(replay, capture_output=True, text=True, timeout=60, env=cluster.env)
    assert "replayed 0 segment(s)" in third.stdout, third.stdout
    print(f"\n[d] {len(delivered)} answers delivered ({len(from_victim)} by the killed replica "
          f"in the {victim_for:.2f} s before the kill, {len(lost_until_replay)} of them not in "
          f"SQL before the replay); "
          f"replay 1: {first.stdout.strip()}; replay 2: {second.stdout.strip()}; "
          f"{len(rows)} rows for the key, one per delivered answer "
          f"(+{len(rows) - len(delivered)} for answers cut off by the kill; "
          f"{len(cut_off)} connections broken by it)")


# ---- replicas started together ----------------------------------------------------------------


def _start_migrating(url: str, barrier: Any, results: Any) -> None:
    """What `manxue serve` does first with the database (open it, apply the migrations), begun
    by every process at the same moment."""
    from manxue.store.db import open_engine

    barrier.wait()
    try:
        open_engine(url).dispose()
        results.put("ok")
    except Exception as exc:  # reported by the test
        results.put(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


def test_replicas_started_together_on_an_empty_database() -> None:
    """A fleet scaled up from nothing starts its replicas at once, and each applies the
    migrations at its start (docs/deploy.md: "a separate migration job is optional"): every
    one of them must come up, not only the first to create the tables."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with postgres_database("manxue_replicas") as database_url:
        barrier, results = ctx.Barrier(3), ctx.Queue()
        procs = [ctx.Process(target=_start_migrating, args=(database_url, barrier, results))
                 for _ in range(3)]
        for p in procs:
            p.start()
        outcomes = sorted(results.get(timeout=60) for _ in procs)
        for p in procs:
            p.join(30)
    failed = [o for o in outcomes if o != "ok"]
    assert not failed, (
        f"{len(failed)} of 3 replicas starting together on an empty database fail: the "
        "migrations at start (manxue.store.db.upgrade) race, each creating alembic_version and "
        "the tables in its own transaction with nothing (such as a PostgreSQL advisory lock) "
        f"to make the others wait, so a replica that loses the race exits: {failed}")
