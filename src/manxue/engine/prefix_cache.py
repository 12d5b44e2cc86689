"""Saved KV state of token prefixes, reused when a new prompt starts with the same tokens.

Like DeepSeek's context caching: when a sequence finishes, the engine copies its KV state
(llama_state_seq_get_data) into this cache, keyed by its tokens. A later prompt that shares a
prefix with an entry gets that state restored (llama_state_seq_set_data) and only the tail
past the common prefix is computed. Entries live in host memory, least recently used evicted
first, within `ram_bytes`; with a directory they are also written to disk (by a background
writer) and read back on a restart, within `disk_bytes`. The KV cache itself keeps only
running sequences, so cached prefixes never slow down attention for the others.

Only the engine thread calls this class; the writer thread only writes and removes files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

log = logging.getLogger("manxue.engine")

_MAGIC = b"MXKV\x01"
_HEADER = struct.Struct("<5sIQ")  # magic, token count, state bytes
TokenArray = npt.NDArray[np.int32]


def common_prefix(a: TokenArray, b: TokenArray) -> int:
    """Length of the longest common prefix of two token arrays."""
    n = min(a.size, b.size)
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n


def tokens_key(tokens: TokenArray) -> str:
    return hashlib.blake2b(tokens.astype("<i4").tobytes(), digest_size=16).hexdigest()


@dataclass(slots=True)
class CachedPrefix:
    key: str
    tokens: TokenArray
    nbytes: int
    state: bytearray | None
    path: Path | None = None
    saved: threading.Event = field(default_factory=threading.Event)

    @property
    def n_tokens(self) -> int:
        return int(self.tokens.size)


class PrefixCache:
    def __init__(self, *, ram_bytes: int, min_tokens: int, directory: Path | None = None,
                 disk_bytes: int = 0) -> None:
        self.ram_bytes = ram_bytes
        self.disk_bytes = disk_bytes
        self.min_tokens = max(1, min_tokens)
        self.directory = directory
        self._entries: OrderedDict[str, CachedPrefix] = OrderedDict()
        self._ram_used = 0
        self._disk_used = 0
        self._jobs: queue.SimpleQueue[tuple[str, CachedPrefix | None, bytearray | None]] | None = None
        self._writer: threading.Thread | None = None
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
            self._load_index(directory)
            self._jobs = queue.SimpleQueue()
            self._writer = threading.Thread(target=self._write_loop, name="manxue-prefix-writer",
                                            daemon=True)
            self._writer.start()

    # -- queries ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def ram_used(self) -> int:
        return self._ram_used

    @property
    def cached_tokens(self) -> int:
        return sum(e.n_tokens for e in self._entries.values())

    def match(self, prompt: TokenArray) -> tuple[CachedPrefix | None, int]:
        """The entry sharing the longest prefix with `prompt`, and that length."""
        best: CachedPrefix | None = None
        best_len = 0
        for entry in reversed(self._entries.values()):  # most recent first wins ties
            if entry.tokens.size == 0 or entry.tokens[0] != prompt[0]:
                continue
            n = common_prefix(prompt, entry.tokens)
            if n > best_len:
                best, best_len = entry, n
        return best, best_len

    def covers(self, tokens: TokenArray) -> bool:
        """Whether some entry already holds all of `tokens` (so saving them again is useless)."""
        for entry in self._entries.values():
            if entry.tokens.size >= tokens.size and common_prefix(tokens, entry.tokens) == tokens.size:
                return True
        return False

    def state_of(self, entry: CachedPrefix) -> bytearray | None:
        """The saved state (read back from disk when only there); marks the entry as used."""
        if entry.key not in self._entries:
            return None
        self._entries.move_to_end(entry.key)
        if entry.state is not None:
            return entry.state
        if entry.path is None:
            return None
        entry.saved.wait(timeout=30)
        try:
            data = _read_file(entry.path, with_state=True)
        except (OSError, ValueError) as exc:
            log.warning("prefix cache: cannot read %s (%s); dropping it", entry.path, exc)
            self.drop(entry)
            return None
        state = data[1]
        if state is None or len(state) != entry.nbytes:
            self.drop(entry)
            return None
        entry.state = state
        self._ram_used += entry.nbytes
        self._evict_ram(keep=entry.key)
        self._job("touch", entry)
        return state

    # -- changes ----------------------------------------------------------------------------

    def add(self, tokens: TokenArray, state: bytearray) -> bool:
        """Keep `state` (the KV of exactly `tokens`); False when it was not worth keeping."""
        if tokens.size < self.min_tokens or not state:
            return False
        nbytes = len(state)
        if nbytes > self.ram_bytes and self.directory is None:
            return False
        for entry in list(self._entries.values()):
            n = common_prefix(tokens, entry.tokens)
            if n == tokens.size:  # already covered by a longer (or equal) entry
                self._entries.move_to_end(entry.key)
                return False
            if n == entry.tokens.size:  # the new state extends this one
                self.drop(entry)
        tokens = np.array(tokens, dtype=np.int32)
        entry = CachedPrefix(tokens_key(tokens), tokens, nbytes, state)
        self._entries[entry.key] = entry
        self._ram_used += nbytes
        if self.directory is not None:
            entry.path = self.directory / f"{entry.key}.kv"
            self._disk_used += nbytes
            self._job("write", entry, state)
        else:
            entry.saved.set()
        self._evict_ram(keep=entry.key)
        self._evict_disk()
        return True

    def drop(self, entry: CachedPrefix) -> None:
        if self._entries.pop(entry.key, None) is None:
            return
        if entry.state is not None:
            self._ram_used -= entry.nbytes
            entry.state = None
        if entry.path is not None:
            self._disk_used -= entry.nbytes
            self._job("delete", entry)

    def clear(self) -> None:
        for entry in list(self._entries.values()):
            self.drop(entry)

    def close(self) -> None:
        """Finish pending disk writes."""
        if self._jobs is not None and self._writer is not None:
            self._jobs.put(("stop", None, None))
            self._writer.join(timeout=60)
            self._jobs = None

    def _evict_ram(self, keep: str) -> None:
        for entry in list(self._entries.values()):
            if self._ram_used <= self.ram_bytes:
                return
            if entry.key == keep or entry.state is None:
                continue
            if entry.path is not None:  # still on disk: only leave memory
                entry.state = None
                self._ram_used -= entry.nbytes
            else:
                self.drop(entry)

    def _evict_disk(self) -> None:
        if self.directory is None:
            return
        for entry in list(self._entries.values()):
            if self._disk_used <= self.disk_bytes or len(self._entries) <= 1:
                return
            self.drop(entry)

    # -- disk -------------------------------------------------------------------------------

    def _job(self, kind: str, entry: CachedPrefix, data: bytearray | None = None) -> None:
        if self._jobs is not None:
            self._jobs.put((kind, entry, data))

    def _write_loop(self) -> None:
        jobs = self._jobs
        assert jobs is not None
        while True:
            kind, entry, data = jobs.get()
            if kind == "stop" or entry is None or entry.path is None:
                return
            try:
                if kind == "write" and data is not None:
                    _write_file(entry.path, entry.tokens, data)
                elif kind == "delete":
                    entry.path.unlink(missing_ok=True)
                elif kind == "touch":
                    os.utime(entry.path)
            except OSError as exc:
                log.warning("prefix cache: %s %s failed: %s", kind, entry.path, exc)
            finally:
                entry.saved.set()

    def _load_index(self, directory: Path) -> None:
        files = sorted(directory.glob("*.kv"), key=lambda p: p.stat().st_mtime)
        for path in files:
            try:
                tokens, _ = _read_file(path, with_state=False)
                nbytes = path.stat().st_size - _HEADER.size - 4 * tokens.size
            except (OSError, ValueError):
                log.warning("prefix cache: ignoring unreadable %s", path)
                continue
            if tokens.size < self.min_tokens:
                continue
            entry = CachedPrefix(path.stem, tokens, nbytes, None, path)
            entry.saved.set()
            self._entries[entry.key] = entry
            self._disk_used += nbytes
        if self._entries:
            log.info("prefix cache: %d saved prefixes found in %s", len(self._entries), directory)
        while self._disk_used > self.disk_bytes and len(self._entries) > 1:
            _, oldest = self._entries.popitem(last=False)
            self._disk_used -= oldest.nbytes
            if oldest.path is not None:
                oldest.path.unlink(missing_ok=True)


def _write_file(path: Path, tokens: TokenArray, state: bytearray) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(_HEADER.pack(_MAGIC, tokens.size, len(state)))
        f.write(tokens.astype("<i4").tobytes())
        f.write(state)
    os.replace(tmp, path)


def _read_file(path: Path, *, with_state: bool) -> tuple[TokenArray, bytearray | None]:
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
        if len(head) != _HEADER.size:
            raise ValueError("short header")
        magic, n_tokens, n_state = _HEADER.unpack(head)
        if magic != _MAGIC:
            raise ValueError("not a manxue prefix file")
        raw = f.read(4 * n_tokens)
        if len(raw) != 4 * n_tokens:
            raise ValueError("short token list")
        tokens = np.frombuffer(raw, dtype="<i4").astype(np.int32)
        if not with_state:
            return tokens, None
        state = bytearray(n_state)
        if f.readinto(state) != n_state:
            raise ValueError("short state")
        return tokens, state
