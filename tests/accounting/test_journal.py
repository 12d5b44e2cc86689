"""The journal on real files: rows survive a killed writer, segments roll over and are sealed,
rows reach SQL and emptied segments are deleted, old line formats still replay."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from sqlalchemy import func, select

from manxue.accounting.journal import Journal
from manxue.accounting.ledger import LEDGER_COLUMNS, LedgerRow, LedgerWriter, append_rows, ledger_time
from manxue.errors import ServiceUnavailable
from manxue.store.db import open_engine
from manxue.store.tables import ledger


def row(i: int, at: float = 1_764_600_000.25) -> LedgerRow:
    values = {"request_id": f"req-{i}", "at": ledger_time(at), "tenant_id": "ten_1", "key_id": "key_1",
              "model": "deepseek-chat", "deployment": "emu", "stream": i % 2 == 0, "status": "ok",
              "prompt_tokens": 10 + i, "cache_hit_tokens": 4, "cache_miss_tokens": 6 + i,
              "completion_tokens": 5, "reasoning_tokens": 0, "usage_source": "upstream",
              "price_list": "resale-usd", "currency": "USD", "price_hit": "0.07", "price_miss": "0.27",
              "price_output": "1.10", "cost_nano": 1000 + i, "upstream_cost_nano": 0, "latency_ms": 3,
              "ttft_ms": 1, "attempts": 1, "error": None if i % 3 else "some \"quoted\"\nerror",
              "client_request_id": f"client-{i}" if i % 2 else None, "unbilled_nano": 0}
    return tuple(values[c] for c in LEDGER_COLUMNS)


def as_dict(r: LedgerRow) -> dict[str, object]:
    return dict(zip(LEDGER_COLUMNS, r, strict=True))


def test_rows_of_a_killed_writer_are_all_replayed(tmp_path: Path) -> None:
    # a child process appends rows and is killed without sealing its segment
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from manxue.accounting.journal import Journal
        from manxue.accounting.ledger import LEDGER_COLUMNS
        from tests.accounting.test_journal import row
        j = Journal(__import__("pathlib").Path({str(tmp_path)!r}), LEDGER_COLUMNS, segment_bytes=8192)
        for i in range(300):
            j.append(row(i))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    segments = sorted(tmp_path.glob("segment-*.jsonl"))
    assert len(segments) > 1  # 300 rows do not fit one 8 KiB segment
    found = [r for _, rows in Journal(tmp_path, LEDGER_COLUMNS).orphans() for r in rows]
    assert found == [as_dict(row(i)) for i in range(300)]


def test_a_live_writers_segment_is_not_replayed(tmp_path: Path) -> None:
    live = Journal(tmp_path, LEDGER_COLUMNS)
    live.append(row(1))
    assert list(Journal(tmp_path, LEDGER_COLUMNS).orphans()) == []
    live.close()
    [(_, rows)] = list(Journal(tmp_path, LEDGER_COLUMNS).orphans())
    assert rows == [as_dict(row(1))]


def test_a_sealed_segment_is_cut_to_its_rows(tmp_path: Path) -> None:
    j = Journal(tmp_path, LEDGER_COLUMNS)
    for i in range(3):
        j.append(row(i))
    [path] = j.close()
    data = path.read_bytes()
    assert b"\0" not in data
    lines = data.splitlines()
    assert orjson.loads(lines[0]) == {"columns": list(LEDGER_COLUMNS)}
    assert [orjson.loads(x) for x in lines[1:]] == [list(row(i)) for i in range(3)]


def test_torn_lines_and_older_formats_replay(tmp_path: Path, caplog) -> None:
    old = {"request_id": "old-1", "at": "2026-11-28T10:00:00+00:00", "model": "m"}
    (tmp_path / "segment-1-1.jsonl").write_bytes(orjson.dumps(old) + b"\n")
    header = orjson.dumps({"columns": list(LEDGER_COLUMNS)})
    torn = orjson.dumps(list(row(2)))[:40]
    (tmp_path / "segment-1-2.jsonl").write_bytes(
        header + b"\n" + orjson.dumps(list(row(1))) + b"\n" + torn + b"\0" * 100)
    found = {p.name: rows for p, rows in Journal(tmp_path, LEDGER_COLUMNS).orphans()}
    assert found["segment-1-1.jsonl"] == [old]
    assert found["segment-1-2.jsonl"] == [as_dict(row(1))]
    assert "torn line" in caplog.text


def test_a_journal_that_cannot_be_written_is_a_clear_503(tmp_path: Path) -> None:
    j = Journal(tmp_path, LEDGER_COLUMNS, segment_bytes=2**62)  # no disk has that much room
    with pytest.raises(ServiceUnavailable) as err:
        j.append(row(1))
    assert err.value.status == 503 and err.value.code == "ledger_unavailable"
    assert list(tmp_path.glob("segment-*")) == []  # nothing half-made is left behind


def test_ledger_time_is_utc_text_sqlalchemy_reads() -> None:
    ts = 1_764_600_123.456789
    assert ledger_time(ts) == datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert ledger_time(ts + 1).endswith(":04.456789")  # the per-second cache moves on


@pytest.mark.parametrize("n", [1, 2, 127, 128, 129, 300])
def test_a_batch_of_any_size_reaches_sql_once_and_intact(tmp_path: Path, n: int) -> None:
    """Batches go in multi-row INSERTs of 128 rows, then halving: every size lands whole, with
    NULLs, bools and quoted text as they were, and repeated request ids skipped."""
    engine = open_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    rows = [row(i, at=1_764_600_000.25 + i / 1000) for i in range(n)]
    repeats = rows[: min(5, n)]
    assert append_rows(engine, rows + repeats) == n + len(repeats)
    assert append_rows(engine, repeats) == len(repeats)
    with engine.connect() as c:
        stored = {r.request_id: r._asdict() for r in c.execute(select(ledger))}
    assert len(stored) == n
    for r in rows:
        got = stored[r[0]]
        got["at"] = got["at"].strftime("%Y-%m-%d %H:%M:%S.%f")
        assert got == as_dict(r)


def test_flusher_moves_rows_to_sql_and_deletes_emptied_segments(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    writer = LedgerWriter(engine, tmp_path / "journal", interval=0.05, batch=1000)
    writer.journal.max_age = 0.0  # seal at every flush

    async def scenario() -> None:
        for i in range(50):
            writer.write(row(i))
        await writer.flush()  # seals the first segment, writes its rows
        for i in range(50, 80):
            writer.write(row(i))
        await writer.flush()  # the first segment's rows are in SQL: it is gone
        assert len(list((tmp_path / "journal").glob("segment-*"))) == 1  # the open one
        for _ in range(5):  # idle: nothing to seal, nothing piles up
            await writer.flush()
        assert len(list((tmp_path / "journal").glob("segment-*"))) == 1
        await writer.close()

    asyncio.run(scenario())
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(ledger)).scalar() == 80
        got = c.execute(select(ledger.c.at, ledger.c.error).where(ledger.c.request_id == "req-0")).one()
    assert got.at.replace(tzinfo=UTC) == datetime.fromtimestamp(1_764_600_000.25, UTC)
    assert got.error == 'some "quoted"\nerror'
    assert list((tmp_path / "journal").glob("segment-*")) == []


def test_replay_is_idempotent(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    j = Journal(tmp_path / "journal", LEDGER_COLUMNS)
    for i in range(5):
        j.append(row(i))
    j.close()  # left behind, as by a process that stopped before flushing
    copy = next((tmp_path / "journal").glob("segment-*")).read_bytes()
    assert LedgerWriter(engine, tmp_path / "journal", 0.25, 100).replay() == 5
    (tmp_path / "journal" / "segment-9-9.jsonl").write_bytes(copy)  # the same rows again
    assert LedgerWriter(engine, tmp_path / "journal", 0.25, 100).replay() == 0
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(ledger)).scalar() == 5


def test_a_segment_written_before_unbilled_existed_replays_as_zero(tmp_path: Path) -> None:
    """A journal left by the previous version (no unbilled_nano column) still reaches SQL."""
    engine = open_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    old_columns = [c for c in LEDGER_COLUMNS if c != "unbilled_nano"]
    j = Journal(tmp_path / "journal", old_columns)
    j.append(row(1)[:-1])
    j.close()
    assert LedgerWriter(engine, tmp_path / "journal", 0.25, 100).replay() == 1
    with engine.connect() as c:
        assert c.execute(select(ledger.c.unbilled_nano)).scalar() == 0
