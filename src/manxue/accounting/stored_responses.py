"""Answers of the Responses API kept for `previous_response_id`: per key, for a while.

A stored response holds the chat history it answered (its input, the inputs of the responses
it continued, and its own answer as an assistant message) and the response object itself. Only
the key that stored it can read, continue or delete it (any other key gets the same 404 as an
unknown id). Rows expire after `[responses] retention_hours`; expired rows are removed as new
ones are written. Without billing (no database), responses are kept in memory, bounded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from sqlalchemy import Engine, delete, insert, or_, select

from manxue.store.tables import responses

MEMORY_LIMIT = 10_000  # responses kept in memory by a gateway without a database
_PURGE_EVERY = 100  # writes between removals of expired rows


class ResponseStore(Protocol):
    def put(self, response_id: str, key_id: str | None, model: str,
            body: dict[str, Any]) -> None: ...

    def get(self, response_id: str, key_id: str | None) -> dict[str, Any] | None: ...

    def delete(self, response_id: str, key_id: str | None) -> bool: ...


def _now() -> datetime:
    return datetime.now(UTC)


class SqlResponseStore:
    """Synchronous: call from a thread when serving."""

    def __init__(self, engine: Engine, retention: timedelta) -> None:
        self.engine = engine
        self.retention = retention
        self._writes = 0

    def _mine(self, response_id: str, key_id: str | None) -> Any:
        owner = responses.c.key_id.is_(None) if key_id is None else responses.c.key_id == key_id
        return (responses.c.id == response_id) & owner & (responses.c.expires_at > _now())

    def put(self, response_id: str, key_id: str | None, model: str, body: dict[str, Any]) -> None:
        now = _now()
        with self.engine.begin() as c:
            c.execute(insert(responses).values(
                id=response_id, key_id=key_id, created_at=now, expires_at=now + self.retention,
                model=model, body=orjson.dumps(body).decode()))
            self._writes += 1
            if self._writes % _PURGE_EVERY == 1:
                c.execute(delete(responses).where(or_(responses.c.expires_at <= now)))

    def get(self, response_id: str, key_id: str | None) -> dict[str, Any] | None:
        with self.engine.connect() as c:
            row = c.execute(select(responses.c.body).where(self._mine(response_id, key_id))).first()
        return orjson.loads(row[0]) if row is not None else None

    def delete(self, response_id: str, key_id: str | None) -> bool:
        with self.engine.begin() as c:
            return bool(c.execute(delete(responses).where(self._mine(response_id, key_id))).rowcount)


class MemoryResponseStore:
    def __init__(self, retention: timedelta, limit: int = MEMORY_LIMIT) -> None:
        self.retention = retention
        self.limit = limit
        self._rows: OrderedDict[str, tuple[str | None, datetime, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, response_id: str, key_id: str | None, model: str, body: dict[str, Any]) -> None:
        with self._lock:
            self._rows[response_id] = (key_id, _now() + self.retention, body)
            while len(self._rows) > self.limit:
                self._rows.popitem(last=False)

    def get(self, response_id: str, key_id: str | None) -> dict[str, Any] | None:
        with self._lock:
            row = self._rows.get(response_id)
        if row is None or row[0] != key_id or row[1] <= _now():
            return None
        return row[2]

    def delete(self, response_id: str, key_id: str | None) -> bool:
        with self._lock:
            row = self._rows.get(response_id)
            if row is None or row[0] != key_id:
                return False
            del self._rows[response_id]
            return True
