"""One-step knowledge: capitals of well-known countries, asked in varied words."""

from __future__ import annotations

from random import Random

from manxue.verify.probes.base import ONLY, Probe, word

CAPITALS = (("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Egypt", "Cairo"),
            ("Germany", "Berlin"), ("Spain", "Madrid"), ("Russia", "Moscow"),
            ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"),
            ("Portugal", "Lisbon"), ("Austria", "Vienna"), ("Thailand", "Bangkok"))
_PHRASES = ("What is the capital of {c}?", "Which city is the capital of {c}?",
            "Name the capital city of {c}.")


def capital(rng: Random) -> Probe:
    country, city = rng.choice(CAPITALS)
    prompt = rng.choice(_PHRASES).format(c=country) + ONLY
    return Probe("capital", 1, prompt, city, word(city))
