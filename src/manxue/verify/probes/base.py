"""A capability probe: a question made fresh from a seeded template, its answer, its grader."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

Grader = Callable[[str], bool]


@dataclass(frozen=True)
class Probe:
    kind: str
    level: int
    prompt: str
    answer: str
    grade: Grader

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "level": self.level, "prompt": self.prompt, "answer": self.answer}


ONLY = " Reply with only the answer."
_INT = re.compile(r"-?\d[\d,]*")


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("−", "-").replace("–", "-")


def number(expected: int) -> Grader:
    """The last integer in the answer equals `expected`."""
    def grade(text: str) -> bool:
        found = _INT.findall(_normal(text))
        if not found:
            return False
        try:
            return int(found[-1].replace(",", "")) == expected
        except ValueError:
            return False
    return grade


def word(expected: str, *, case: bool = False) -> Grader:
    """`expected` appears as a whole word (letters compared case-blind unless `case`)."""
    flags = 0 if case else re.IGNORECASE
    pattern = re.compile(rf"(?<![\w]){re.escape(expected)}(?![\w])", flags)
    return lambda text: pattern.search(_normal(text)) is not None


def first_of(expected: str, options: list[str]) -> Grader:
    """Of the `options` (names), the first one the answer mentions is `expected`."""
    def grade(text: str) -> bool:
        t = _normal(text)
        hits = [(m.start(), o) for o in options
                if (m := re.search(rf"(?<![\w]){re.escape(o)}(?![\w])", t)) is not None]
        return bool(hits) and min(hits)[1] == expected
    return grade


def han(expected: str, parts: str) -> Grader:
    """The first CJK character that is not one of the components is `expected`."""
    def grade(text: str) -> bool:
        for ch in _normal(text):
            if "\u3400" <= ch <= "\u9fff" and ch not in parts:
                return ch == expected
        return False
    return grade
