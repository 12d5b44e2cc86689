"""Generated tokens to text: UTF-8 across token boundaries and stop strings across tokens.

StopFilter holds back the shortest tail of the text that could still grow into a stop string,
so a stop string split over several tokens is never shown. It hands text out in segments, one
per token (a token whose text is partly held back comes out in two pieces); a token's item (its
log-probability record) travels with its first piece. Tokens cut off by a stop string, whose
text never shows, are dropped with their items.
"""

from __future__ import annotations

import codecs
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")
Segment = tuple[str, T | None]


class Utf8Text:
    """Bytes of successive tokens to text; an incomplete character waits for the next token."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def finish(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopFilter(Generic[T]):
    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self._longest = max((len(s) for s in stops), default=0)
        self._pending: deque[tuple[str, T | None]] = deque()
        self._buf = ""

    def feed(self, text: str, item: T | None) -> tuple[list[Segment[T]], bool]:
        """Add one token's text; return the segments now safe to show and whether a stop hit."""
        if not self.stops:
            return [(text, item)], False
        start = max(0, len(self._buf) - self._longest + 1)
        self._buf += text
        self._pending.append((text, item))
        hit = -1
        for stop in self.stops:
            pos = self._buf.find(stop, start)
            if pos >= 0 and (hit < 0 or pos < hit):
                hit = pos
        if hit >= 0:
            out = self._release(hit)
            self._pending.clear()
            self._buf = ""
            return out, True
        return self._release(len(self._buf) - self._held_tail()), False

    def finish(self) -> list[Segment[T]]:
        """Release whatever was held (the answer ended without completing a stop string)."""
        return self._release(len(self._buf))

    def _held_tail(self) -> int:
        buf = self._buf
        for k in range(min(self._longest - 1, len(buf)), 0, -1):
            tail = buf[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0

    def _release(self, upto: int) -> list[Segment[T]]:
        """Hand out the first `upto` characters; a token's item goes with its first piece."""
        out: list[Segment[T]] = []
        left = upto
        while self._pending:
            text, item = self._pending[0]
            if len(text) <= left:
                out.append((text, item))
                left -= len(text)
                self._pending.popleft()
                continue
            if left > 0:
                out.append((text[:left], item))
                self._pending[0] = (text[left:], None)
            break
        self._buf = self._buf[upto:]
        return out
