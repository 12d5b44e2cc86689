"""The append-only journal: every ledger row is written here before its answer is delivered.

A segment is a file allocated up front (`posix_fallocate`, so a full disk is found when a
segment is opened, not halfway through a row) and mapped into memory. Appending a row is a
copy into that mapping, with no system call: the kernel's page cache holds the row the moment
the copy ends, so it survives the process being killed exactly as a `write` would (neither
survives a power cut without fsync; see docs/billing.md).

A segment starts with a header line naming the columns (`{"columns": [...]}`); each row
follows as one JSON array in that order, so a segment stays readable whatever migrations run
before it is replayed. The space after the last row is zeros until the segment is sealed
(cut to its length and closed). The flusher seals the open segment every `max_age` seconds,
or once it is half full, and deletes sealed segments once their rows are in SQL. Whoever
starts next replays the segments no live process holds (each writer keeps an exclusive lock
on its open segment), idempotently by request id.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from manxue.errors import ServiceUnavailable

log = logging.getLogger("manxue.ledger")

SEGMENT_BYTES = 8 * 1024 * 1024
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)  # Linux 5.14+
_DUMPS_OPTIONS = orjson.OPT_APPEND_NEWLINE


class Segment:
    """One journal file, locked, allocated and mapped; rows are copied in at `pos`."""

    def __init__(self, path: Path, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        self.mm = mmap.mmap(fd, size)
        self.pos = 0
        self.rows_from = 0  # where the rows start (after the header)
        self.opened = time.monotonic()

    @classmethod
    def create(cls, directory: Path, header: bytes, size: int) -> Segment:
        path = directory / f"segment-{os.getpid()}-{time.time_ns()}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.posix_fallocate(fd, 0, size)
            seg = cls(path, fd, size)
            # take the page faults here (a worker thread), not on the request path; an older
            # kernel refuses, and pages are then mapped on first write
            with contextlib.suppress(OSError, ValueError):
                seg.mm.madvise(_MADV_POPULATE_WRITE)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        seg.write(header)
        seg.rows_from = seg.pos
        return seg

    def write(self, line: bytes) -> bool:
        """Copy `line` in; False when it does not fit (nothing is written then)."""
        end = self.pos + len(line)
        if end > self.size:
            return False
        self.mm[self.pos:end] = line
        self.pos = end
        return True

    @property
    def fill(self) -> float:
        return self.pos / self.size

    def seal(self) -> None:
        """Unmap, cut the file to its rows and close it (which drops the lock)."""
        self.mm.close()
        try:
            os.ftruncate(self.fd, self.pos)
        finally:
            os.close(self.fd)


class Journal:
    """Segments on disk, and in memory the rows appended since the flusher last took them
    (`tail`), which are the rows not yet in SQL."""

    def __init__(self, directory: Path, columns: Sequence[str], *,
                 segment_bytes: int = SEGMENT_BYTES, max_age: float = 10.0,
                 tail_limit: int = 0, on_tail_full: Callable[[], object] | None = None) -> None:
        self.dir = directory
        self.tail: list[tuple[Any, ...]] = []
        self._tail_limit = tail_limit if on_tail_full is not None else 0
        self._on_tail_full = on_tail_full
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.max_age = max_age
        self._header = orjson.dumps({"columns": list(columns)}, option=_DUMPS_OPTIONS)
        self._open: Segment | None = None
        self._sealed: list[Path] = []
        # why the last segment could not be opened (a full disk, a read-only directory), until
        # one opens again; while set, the meter admits no request (it could not be recorded)
        self.failed: str | None = None

    # ---- the request path ---------------------------------------------------------------------
    def append(self, row: tuple[Any, ...]) -> None:
        """Write one row (values in the header's column order), and keep it in the tail."""
        line = orjson.dumps(row, option=_DUMPS_OPTIONS)
        seg = self._open
        if seg is not None and seg.pos + len(line) <= seg.size:
            # `seg.write(line)`, inlined: this runs once per request
            pos = seg.pos
            seg.mm[pos:pos + len(line)] = line
            seg.pos = pos + len(line)
        else:
            seg = self._new_segment(len(line))
            self._install(seg)
            seg.write(line)
        tail = self.tail
        tail.append(row)
        if len(tail) == self._tail_limit:
            self._on_tail_full()  # type: ignore[misc]  # set whenever the limit is

    def take(self) -> list[tuple[Any, ...]]:
        """The tail's rows, leaving it empty (their segments stay until `forget`)."""
        rows, self.tail = self.tail, []
        return rows

    def put_back(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows taken whose flush failed: first in the tail again."""
        self.tail[:0] = rows

    # ---- the flusher --------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether the open segment should be sealed now: it holds rows, and is old or half full."""
        seg = self._open
        return seg is not None and seg.pos > seg.rows_from and (
            seg.fill >= 0.5 or time.monotonic() - seg.opened >= self.max_age)

    def new_segment(self) -> Segment:
        """A fresh segment (call from a worker thread; install it with `swap`)."""
        return self._new_segment(0)

    def swap(self, seg: Segment) -> Segment | None:
        """Make `seg` the open segment; return the previous one, to be sealed (in a thread)."""
        if self.failed is not None:
            log.warning("journal: writable again (%s)", self.dir)
            self.failed = None
        old, self._open = self._open, seg
        if old is not None:
            self._sealed.append(old.path)
        return old

    def sealed(self) -> list[Path]:
        """Segments no longer written to and not yet released."""
        return list(self._sealed)

    def forget(self, segments: list[Path]) -> None:
        """These segments were deleted (their rows are in SQL; `delete` runs in a worker thread)."""
        for seg in segments:
            if seg in self._sealed:
                self._sealed.remove(seg)

    def close(self) -> list[Path]:
        """Seal the open segment; return every sealed segment not yet released."""
        old = self._open
        self._open = None
        if old is not None:
            old.seal()
            self._sealed.append(old.path)
        return list(self._sealed)

    def _new_segment(self, line_bytes: int) -> Segment:
        size = max(self.segment_bytes, len(self._header) + line_bytes)
        try:
            return Segment.create(self.dir, self._header, size)
        except OSError as exc:
            if self.failed is None:  # logged once per outage, not once per retry
                log.error("journal: cannot open a %d-byte segment in %s: %s; no request is "
                          "admitted until one opens", size, self.dir, exc)
            self.failed = f"{type(exc).__name__}: {exc}"
            raise ledger_unavailable() from exc

    def _install(self, seg: Segment) -> None:
        old = self.swap(seg)
        if old is not None:
            old.seal()

    # ---- start-up -----------------------------------------------------------------------------
    def orphans(self) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
        """Segments left by processes that are gone, with their rows as dicts (a torn last
        line skipped)."""
        mine = set(self._sealed) | ({self._open.path} if self._open else set())
        for path in sorted(self.dir.glob("segment-*.jsonl")):
            if path in mine:
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
                with open(fd, "rb", closefd=False) as f:
                    data = f.read()
                end = data.find(b"\0")  # an unsealed segment: zeros after the last row
                if end >= 0:
                    data = data[:end]
                yield path, read_segment(data.splitlines(), path.name)
            finally:
                os.close(fd)


def ledger_unavailable() -> ServiceUnavailable:
    """The 503 for a request whose usage cannot be recorded."""
    return ServiceUnavailable(
        "the gateway cannot record usage right now (its ledger journal cannot be written), so it "
        "does not serve answers; retry shortly", code="ledger_unavailable", retry_after=5.0)


def delete(segments: Iterable[Path]) -> None:
    for seg in segments:
        seg.unlink(missing_ok=True)


def read_segment(lines: Iterable[bytes], name: str) -> list[dict[str, Any]]:
    """The rows of one segment. Rows are arrays under the last header seen; a line that is a
    plain object is a row as earlier versions wrote them."""
    columns: list[str] | None = None
    rows: list[dict[str, Any]] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("journal %s: skipped a torn line", name)
            continue
        if isinstance(obj, list):
            if columns is None or len(obj) != len(columns):
                log.warning("journal %s: skipped a row that does not match its header", name)
                continue
            rows.append(dict(zip(columns, obj, strict=True)))
        elif isinstance(obj, dict) and set(obj) == {"columns"}:
            columns = [str(c) for c in obj["columns"]]
        elif isinstance(obj, dict):
            rows.append(obj)
    return rows
