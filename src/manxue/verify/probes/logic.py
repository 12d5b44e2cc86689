"""Orderings stated in shuffled facts: who is first, last, or in the middle."""

from __future__ import annotations

from itertools import pairwise
from random import Random

from manxue.verify.probes.base import ONLY, Probe, first_of

NAMES = ("Anna", "Boris", "Chen", "Dara", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Jun",
         "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya")
_TRAITS = (("taller", "shortest", "tallest"), ("older", "youngest", "oldest"),
           ("faster", "slowest", "fastest"))


def _facts(rng: Random, people: list[str], comparative: str) -> str:
    pairs = [f"{a} is {comparative} than {b}." for a, b in pairwise(people)]
    rng.shuffle(pairs)
    return " ".join(pairs)


def order3(rng: Random) -> Probe:
    people = rng.sample(NAMES, 3)  # in decreasing order of the trait
    comparative, least, _ = rng.choice(_TRAITS)
    facts = _facts(rng, people, comparative)
    return Probe("order3", 2, f"{facts} Who is the {least}?{ONLY}", people[-1],
                 first_of(people[-1], people))


def order5(rng: Random) -> Probe:
    people = rng.sample(NAMES, 5)
    comparative, _, most = rng.choice(_TRAITS)
    facts = _facts(rng, people, comparative)
    return Probe("order5", 3, f"{facts} Who is the second {most}?{ONLY}", people[1],
                 first_of(people[1], people))
