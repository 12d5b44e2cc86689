"""Split a reasoning model's `<think>…</think>` block from its answer.

Only a block at the very start of the answer counts (leading whitespace aside), or one the
prompt already opened (templates such as DeepSeek-R1's end the prompt with `<think>`). Text
inside goes to `reasoning_content`; the tags themselves and the blank lines right after the
closing tag are dropped. Tags split across tokens are held back until they are whole.
"""

from __future__ import annotations

from typing import Literal

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"

State = Literal["start", "reasoning", "content"]


class ReasoningSplitter:
    def __init__(self, *, enabled: bool = True, start_inside: bool = False) -> None:
        self.state: State = "start" if enabled else "content"
        if enabled and start_inside:
            self.state = "reasoning"
        self._buf = ""
        self._strip_leading = False

    @property
    def in_reasoning(self) -> bool:
        return self.state == "reasoning"

    def feed(self, text: str) -> tuple[str, str]:
        """Return (reasoning, content) that can be shown now."""
        reasoning = content = ""
        if self.state == "start":
            self._buf += text
            head = self._buf.lstrip()
            if head.startswith(OPEN_TAG):
                self.state = "reasoning"
                text, self._buf = head[len(OPEN_TAG):], ""
            elif OPEN_TAG.startswith(head):
                return "", ""  # could still become the opening tag
            else:
                self.state = "content"
                text, self._buf = self._buf, ""
        if self.state == "reasoning":
            self._buf += text
            end = self._buf.find(CLOSE_TAG)
            if end < 0:
                keep = _partial_suffix(self._buf, CLOSE_TAG)
                cut = len(self._buf) - keep
                reasoning, self._buf = self._buf[:cut], self._buf[cut:]
                return reasoning, ""
            reasoning, text = self._buf[:end], self._buf[end + len(CLOSE_TAG):]
            self._buf = ""
            self.state = "content"
            self._strip_leading = True
        content = self._content(text)
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        buf, self._buf = self._buf, ""
        if self.state == "reasoning":
            return buf, ""
        return "", self._content(buf)

    def _content(self, text: str) -> str:
        if self._strip_leading and text:
            text = text.lstrip()
            if text:
                self._strip_leading = False
        return text


def _partial_suffix(buf: str, tag: str) -> int:
    """Length of the longest tail of `buf` that is a proper prefix of `tag`."""
    for k in range(min(len(tag) - 1, len(buf)), 0, -1):
        if tag.startswith(buf[-k:]):
            return k
    return 0
