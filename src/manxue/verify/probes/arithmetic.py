"""Arithmetic and algebra with exact integer answers."""

from __future__ import annotations

from random import Random

from manxue.verify.probes.base import ONLY, Probe, number


def add(rng: Random) -> Probe:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    return Probe("add", 1, f"What is {a} + {b}?{ONLY}", str(a + b), number(a + b))


def larger(rng: Random) -> Probe:
    a, b = rng.sample(range(10, 100), 2)
    return Probe("larger", 1, f"Which number is larger, {a} or {b}?{ONLY}", str(max(a, b)),
                 number(max(a, b)))


def two_step(rng: Random) -> Probe:
    a, b, c = rng.randint(11, 29), rng.randint(11, 29), rng.randint(10, 99)
    v = a * b + c
    return Probe("two_step", 2, f"Compute {a} × {b} + {c}.{ONLY}", str(v), number(v))


def linear(rng: Random) -> Probe:
    x = rng.choice([n for n in range(-9, 13) if n not in (0, 1)])
    a, b = rng.randint(2, 9), rng.randint(-20, 20)
    c = a * x + b
    sign = "+" if b >= 0 else "-"
    return Probe("linear", 2, f"Solve for x: {a}x {sign} {abs(b)} = {c}. Give x.{ONLY}", str(x),
                 number(x))


def chained(rng: Random) -> Probe:
    a, b, c, d = (rng.randint(12, 99) for _ in range(4))
    e = rng.randint(100, 999)
    v = a * b - c * d + e
    return Probe("chained", 3, f"Compute ({a} × {b}) − ({c} × {d}) + {e}.{ONLY}", str(v), number(v))


def modpow(rng: Random) -> Probe:
    a, b, m = rng.randint(2, 9), rng.randint(5, 12), rng.choice([7, 11, 13, 17, 19, 23])
    v = pow(a, b, m)
    return Probe("modpow", 3, f"What is the remainder when {a}^{b} is divided by {m}?{ONLY}",
                 str(v), number(v))


def system(rng: Random) -> Probe:
    x, y = rng.randint(3, 40), rng.randint(3, 40)
    return Probe("system", 3, f"If x + y = {x + y} and x − y = {x - y}, what is x × y?{ONLY}",
                 str(x * y), number(x * y))
