"""The append-only journal: every ledger row is written here before its answer is delivered.

Rows go to a segment file with one unbuffered `write` each, so once `append` returns the row
survives the process being killed. A background flusher moves rows to SQL in batches and then
deletes the segments it emptied. Whoever starts next replays the segments no live process
holds (each writer keeps an exclusive lock on its open segment), idempotently by request id.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("manxue.ledger")

_MAX_SEGMENT = 64 * 1024 * 1024


class Journal:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._closed_segments: list[Path] = []

    def _open_segment(self) -> None:
        name = f"segment-{os.getpid()}-{time.time_ns()}.jsonl"
        path = self.dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fd, self._path, self._size = fd, path, 0

    def append(self, row: dict[str, Any]) -> None:
        if self._fd is None or self._size > _MAX_SEGMENT:
            self.rotate()
            self._open_segment()
        line = orjson.dumps(row) + b"\n"
        assert self._fd is not None
        os.write(self._fd, line)
        self._size += len(line)

    def rotate(self) -> list[Path]:
        """Close the open segment; return every closed segment not yet released."""
        if self._fd is not None:
            fd, path = self._fd, self._path
            self._fd, self._path = None, None
            os.close(fd)  # also drops the lock
            assert path is not None
            self._closed_segments.append(path)
        return list(self._closed_segments)

    def release(self, segments: list[Path]) -> None:
        """The rows of these segments are in SQL: delete them."""
        for seg in segments:
            seg.unlink(missing_ok=True)
            if seg in self._closed_segments:
                self._closed_segments.remove(seg)

    def close(self) -> None:
        self.rotate()

    def orphans(self) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
        """Segments left by processes that are gone, with their rows (a torn last line skipped)."""
        for path in sorted(self.dir.glob("segment-*.jsonl")):
            if path == self._path or path in self._closed_segments:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer holds it
                rows = []
                with open(fd, "rb", closefd=False) as f:
                    for line in f:
                        try:
                            rows.append(orjson.loads(line))
                        except orjson.JSONDecodeError:
                            log.warning("journal %s: skipped a torn line", path.name)
                yield path, rows
            finally:
                os.close(fd)

