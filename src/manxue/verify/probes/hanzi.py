"""Chinese character composition: which character do these components make?

The compositions come from a table (a provider could learn the table, so these are mixed with
generated items); the pairing with a phrasing and the order of components is drawn per audit.
Level 2: everyday characters; level 3: rare ones (木 + 乞 = 杚 is the one in circulating lists).
"""

from __future__ import annotations

from random import Random

from manxue.verify.probes.base import Probe, han

COMMON = (("日", "月", "明"), ("女", "子", "好"), ("木", "木", "林"), ("人", "木", "休"),
          ("火", "火", "炎"), ("日", "日", "昌"), ("田", "力", "男"), ("小", "大", "尖"),
          ("不", "正", "歪"), ("口", "乞", "吃"), ("女", "马", "妈"), ("禾", "火", "秋"),
          ("土", "也", "地"), ("女", "也", "她"))
RARE = (("木", "乞", "杚"), ("石石", "石", "磊"), ("金金", "金", "鑫"), ("火火", "火", "焱"),
        ("水水", "水", "淼"), ("牛牛", "牛", "犇"), ("马马", "马", "骉"), ("土土", "土", "垚"),
        ("犬犬", "犬", "猋"))

_PHRASES = (
    "Which single Chinese character is formed by combining {parts}? Reply with only that character.",
    "汉字拼字：{parts} 合起来是哪个字？只回答这个字。",
    "把 {parts} 组成一个汉字，是哪个字？只写出这个字。",
)


def _parts(rng: Random, a: str, b: str) -> str:
    items = list(a) + list(b)
    if len(set(items)) > 1:
        rng.shuffle(items)
    return " + ".join(items)


def common(rng: Random) -> Probe:
    a, b, ch = rng.choice(COMMON)
    prompt = rng.choice(_PHRASES).format(parts=_parts(rng, a, b))
    return Probe("hanzi", 2, prompt, ch, han(ch, a + b))


def rare(rng: Random) -> Probe:
    a, b, ch = rng.choice(RARE)
    prompt = rng.choice(_PHRASES).format(parts=_parts(rng, a, b))
    return Probe("hanzi_rare", 3, prompt, ch, han(ch, a + b))
