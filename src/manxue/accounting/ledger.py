"""Ledger rows: written to the journal at once, to SQL in batches by a background flusher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from manxue.accounting.journal import Journal
from manxue.store.tables import ledger

log = logging.getLogger("manxue.ledger")


_COLUMNS = [c.name for c in ledger.columns]


def insert_rows(engine: Engine, rows: list[dict[str, Any]], *, count: bool = True) -> int:
    """Insert rows, skipping request ids already present; return how many were new.

    With `count=False` (the flusher's fast path) the rows go in as one driver-level
    executemany and the return value is only the number of rows sent.
    """
    if not rows:
        return 0
    clean = [_from_journal(r) for r in rows]
    if not count:
        is_sqlite = engine.dialect.name == "sqlite"
        if is_sqlite:  # stored as SQLAlchemy's SQLite DateTime stores it: naive UTC text
            clean = [{**r, "at": r["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")} for r in clean]
        marks = ", ".join(["?" if is_sqlite else "%s"] * len(_COLUMNS))
        sql = (f"INSERT INTO ledger ({', '.join(_COLUMNS)}) VALUES ({marks}) "
               "ON CONFLICT (request_id) DO NOTHING")
        params = [tuple(r.get(c) for c in _COLUMNS) for r in clean]
        with engine.begin() as c:
            c.exec_driver_sql(sql, params)
        return len(rows)
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(ledger).on_conflict_do_nothing(index_elements=["request_id"])
            .returning(ledger.c.request_id))
    with engine.begin() as c:
        return len(c.execute(stmt, clean).all())


def _from_journal(row: dict[str, Any]) -> dict[str, Any]:
    at = row["at"]
    if isinstance(at, str):
        row = {**row, "at": datetime.fromisoformat(at)}
    return row


class LedgerWriter:
    """Owns the journal; `write` is called on the hot path, `run` flushes in the background."""

    def __init__(self, engine: Engine, journal_dir: Path, interval: float, batch: int) -> None:
        self.engine = engine
        self.journal = Journal(journal_dir)
        self.interval = interval
        self.batch = batch
        self._pending: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()  # one flush at a time: segments are released in order
        self.flushed = 0

    def write(self, row: dict[str, Any]) -> None:
        """Durable once this returns (the row is in the journal file)."""
        self.journal.append(row)
        self._pending.append(row)
        if len(self._pending) >= self.batch:
            self._wake.set()

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

    async def _flush(self) -> None:
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        segments = self.journal.rotate()
        try:
            await asyncio.to_thread(insert_rows, self.engine, rows, count=False)
        except Exception:
            log.exception("ledger: flush of %d rows failed; they stay in the journal", len(rows))
            self._pending[:0] = rows
            return
        self.journal.release(segments)
        self.flushed += len(rows)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        await self.flush()
        self.journal.close()
