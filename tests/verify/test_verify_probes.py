"""Capability probes: fresh per seed, reproducible, answers right, graders strict."""

from __future__ import annotations

import random
import re

from manxue.verify.probes import BY_LEVEL, generate, hanzi
from manxue.verify.probes.base import first_of, han, number, word


def test_probes_are_reproducible_and_fresh_per_seed() -> None:
    a, b, c = generate(1, 30), generate(1, 30), generate(2, 30)
    assert [p.prompt for p in a] == [p.prompt for p in b]
    assert len({p.prompt for p in a} & {p.prompt for p in c}) < 10
    assert [p.level for p in a[:6]] == [1, 2, 3, 1, 2, 3]


def test_every_generator_grades_its_own_answer_as_right() -> None:
    for level, gens in BY_LEVEL.items():
        for gen in gens:
            for seed in range(25):
                p = gen(random.Random(seed))
                assert p.level == level
                assert p.grade(p.answer), (p.prompt, p.answer)
                assert p.grade(f"The answer is {p.answer}."), (p.prompt, p.answer)
                assert not p.grade("I do not know."), p.prompt


def test_arithmetic_answers_are_computed_right() -> None:
    for p in generate(5, 60):
        m = re.fullmatch(r"Compute (\d+) × (\d+) \+ (\d+)\. Reply with only the answer\.", p.prompt)
        if m:
            a, b, c = map(int, m.groups())
            assert int(p.answer) == a * b + c
        m = re.fullmatch(r"Solve for x: (\d+)x ([+-]) (\d+) = (-?\d+)\. Give x\..*", p.prompt)
        if m:
            a, sign, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            assert a * int(p.answer) + (b if sign == "+" else -b) == c


def test_graders_are_strict() -> None:
    assert number(42)("so it is 42") and not number(42)("42 or maybe 43")
    assert number(-3)("x = −3") and number(1234)("1,234")
    assert word("dcba")("Backwards: dcba.") and not word("dcba")("abcd")
    assert word("ZUBA", case=True)("ZUBA") and not word("ZUBA", case=True)("zuba")
    assert first_of("Anna", ["Anna", "Boris"])("Anna is the shortest, then Boris")
    assert not first_of("Anna", ["Anna", "Boris"])("Boris, then Anna")
    assert han("杚", "木乞")("木 + 乞 = 杚") and not han("杚", "木乞")("吃")


def test_hanzi_tables_compose_to_distinct_characters() -> None:
    for a, b, ch in hanzi.COMMON + hanzi.RARE:
        assert len(ch) == 1 and ch not in a + b
