"""Counting and string manipulation on words made up per audit (never in any training set)."""

from __future__ import annotations

from random import Random

from manxue.verify.probes.base import ONLY, Probe, word

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def made_up(rng: Random, syllables: int) -> str:
    return "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))


def upper(rng: Random) -> Probe:
    w = made_up(rng, 3)
    return Probe("upper", 1, f"Write the word '{w}' in capital letters.{ONLY}", w.upper(),
                 word(w.upper(), case=True))


def count_letter(rng: Random) -> Probe:
    letter = rng.choice("aeiou")
    w = list(made_up(rng, 4))
    positions = rng.sample(range(len(w)), rng.randint(2, 4))
    for p in positions:
        w[p] = letter
    text = "".join(w)
    n = text.count(letter)
    return Probe("count_letter", 2,
                 f"How many times does the letter '{letter}' appear in '{text}'?{ONLY}", str(n),
                 word(str(n)))


def reverse_short(rng: Random) -> Probe:
    w = "".join(rng.sample("abcdefghkmnprstuvwxyz", 4))
    return Probe("reverse", 2, f"Write '{w}' backwards, letter by letter.{ONLY}", w[::-1],
                 word(w[::-1]))


def reverse_long(rng: Random) -> Probe:
    w = "".join(rng.sample("abcdefghkmnprstuvwxyz", 7))
    return Probe("reverse_long", 3, f"Write '{w}' backwards, letter by letter.{ONLY}", w[::-1],
                 word(w[::-1]))
