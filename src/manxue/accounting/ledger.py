"""Ledger rows: written to the journal at once, to SQL in batches by a background flusher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from manxue.accounting.journal import SEGMENT_BYTES, Journal, delete
from manxue.errors import ServiceUnavailable
from manxue.store.tables import ledger
from manxue.timeutil import assume_utc

log = logging.getLogger("manxue.ledger")


LEDGER_COLUMNS: tuple[str, ...] = tuple(str.__str__(c.name) for c in ledger.columns)
LedgerRow = tuple[Any, ...]  # one value per column of LEDGER_COLUMNS, in that order
_clock: list[Any] = [-1, ""]  # the last second formatted, and its text (a list: no `global`)
_CHUNK = 128  # rows per INSERT statement: 128 × 27 values, within SQLite's and PostgreSQL's limits


def ledger_time(ts: float) -> str:
    """A POSIX time as ledger rows carry it: naive UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'
    (the form SQLAlchemy stores in SQLite), the seconds formatted once per second."""
    second = int(ts)
    clock = _clock
    if clock[0] != second:
        clock[1] = time.strftime("%Y-%m-%d %H:%M:%S.", time.gmtime(second))
        clock[0] = second
    text: str = clock[1]
    # %-formatting a float as %d truncates it, as int() would, in fewer steps than an f-string
    return text + "%06d" % ((ts - second) * 1_000_000)  # noqa: UP031


@lru_cache(maxsize=32)
def _append_sql(dialect: str, rows: int) -> str:
    if dialect == "sqlite":
        marks = ["?"] * len(LEDGER_COLUMNS)
    else:  # the text is UTC whatever the session's time zone; `stream` comes as 0 or 1
        special = {"at": "(CAST(%s AS timestamp) AT TIME ZONE 'UTC')",
                   "stream": "CAST(CAST(%s AS integer) AS boolean)"}
        marks = [special.get(c, "%s") for c in LEDGER_COLUMNS]
    one = f"({', '.join(marks)})"
    return (f"INSERT INTO ledger ({', '.join(LEDGER_COLUMNS)}) VALUES {', '.join([one] * rows)} "
            "ON CONFLICT (request_id) DO NOTHING")


def append_rows(engine: Engine, rows: list[LedgerRow]) -> int:
    """The flusher's fast path: rows as `Meter.record` builds them (`at` from `ledger_time`),
    request ids already present skipped, in one transaction. Returns the number of rows sent.

    Rows go in multi-row INSERTs of up to `_CHUNK` rows (then halving, so that a handful of
    statement texts cover every batch size and stay in the driver's statement cache): in
    SQLite that costs about a third less per row than an executemany of single-row INSERTs,
    which steps, resets and re-binds the statement once per row."""
    if not rows:
        return 0
    dialect = engine.dialect.name
    with engine.begin() as c:
        i, total = 0, len(rows)
        while i < total:
            n = min(_CHUNK, total - i)
            n = 1 << (n.bit_length() - 1)  # the largest power of two that fits
            c.exec_driver_sql(_append_sql(dialect, n), tuple(chain.from_iterable(rows[i:i + n])))
            i += n
    return total


def insert_rows(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert rows (`at` a datetime or ISO-8601 text, naive meaning UTC), skipping request ids
    already present; return how many were new."""
    if not rows:
        return 0
    clean = [_from_journal(r) for r in rows]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(ledger).on_conflict_do_nothing(index_elements=["request_id"])
            .returning(ledger.c.request_id))
    with engine.begin() as c:
        return len(c.execute(stmt, clean).all())


def _from_journal(row: dict[str, Any]) -> dict[str, Any]:
    at = row["at"]
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    at = assume_utc(at)
    return {**row, "at": at, "stream": bool(row.get("stream"))}  # rows carry it as 0 or 1


class LedgerWriter:
    """Owns the journal; `write` is called on the hot path, `run` flushes in the background."""

    def __init__(self, engine: Engine, journal_dir: Path, interval: float, batch: int,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.engine = engine
        self._wake = asyncio.Event()
        self.journal = Journal(journal_dir, LEDGER_COLUMNS, segment_bytes=segment_bytes,
                               tail_limit=batch, on_tail_full=self._wake.set)
        self.interval = interval
        self.batch = batch
        self._flushing = asyncio.Lock()  # one flush at a time: segments are released in order
        self.flushed = 0
        # Durable once it returns (the row is in the journal file); the journal keeps the row in
        # its tail until a flush takes it, and wakes the flusher once `batch` rows wait.
        self.write = self.journal.append

    def replay(self) -> int:
        """Move rows of segments left by earlier (or killed) processes into SQL."""
        moved = 0
        for path, rows in self.journal.orphans():
            moved += insert_rows(self.engine, rows)
            path.unlink(missing_ok=True)
        if moved:
            log.info("ledger: replayed %d rows from the journal", moved)
        return moved

    async def flush(self) -> None:
        async with self._flushing:
            await self._flush()

    async def open_segment(self) -> None:
        """Make a fresh segment the open one, and seal the old, off the loop. A journal that
        cannot be written stays `failed` (logged once) and is tried again at the next flush."""
        try:
            seg = await asyncio.to_thread(self.journal.new_segment)
        except ServiceUnavailable:
            return
        old = self.journal.swap(seg)
        if old is not None:
            await asyncio.to_thread(old.seal)

    async def _flush(self) -> None:
        if self.journal.due() or self.journal.failed is not None:
            await self.open_segment()
        segments = self.journal.sealed()  # every row of these is in the tail or already in SQL
        if not self.journal.tail and not segments:
            return
        rows = self.journal.take()
        try:
            await asyncio.to_thread(self._commit, rows, segments)
        except Exception:
            log.exception("ledger: flush of %d rows failed; they stay in the journal", len(rows))
            self.journal.put_back(rows)
            return
        self.journal.forget(segments)
        self.flushed += len(rows)

    def _commit(self, rows: list[LedgerRow], segments: list[Path]) -> None:
        append_rows(self.engine, rows)
        delete(segments)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the rows stay in memory and in the journal; try again later
                log.exception("ledger: flush failed; retrying in %.2f s", self.interval)

    async def close(self) -> None:
        async with self._flushing:
            segments = self.journal.close()
            rows = self.journal.take()
            try:
                await asyncio.to_thread(self._commit, rows, segments)
            except Exception:
                log.exception("ledger: the last %d rows stay in the journal for the next start",
                              len(rows))
                return
            self.journal.forget(segments)
