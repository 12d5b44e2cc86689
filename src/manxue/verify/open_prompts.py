"""Short open-ended prompts for the distribution test, drawn per audit from seeded templates."""

from __future__ import annotations

from random import Random

_TOPICS = ("rivers", "autumn", "bicycles", "the moon", "bread", "trains", "snow", "libraries",
           "bees", "coffee", "mountains", "the sea", "clocks", "gardens", "rain", "markets")
_THINGS = ("a fruit", "a colour", "a bird", "a musical instrument", "a tree", "a planet",
           "a vegetable", "a sport", "a metal", "a flower", "a dog breed", "a spice")
_NAMES = ("Maria", "Kenji", "Amara", "Lukas", "Wei", "Sofia", "Tariq", "Ines")
_TEMPLATES = (
    "Write one sentence about {topic}.",
    "Describe {topic} in three words.",
    "Name {thing}.",
    "Say hello to {name}.",
    "Give me a short title for a poem about {topic}.",
    "Tell me one fact about {topic}.",
    "用一句话描述{topic}。",
)


def open_prompts(seed: int, count: int) -> list[str]:
    """`count` distinct prompts for this seed."""
    rng = Random(f"open:{seed}")
    seen: list[str] = []
    while len(seen) < count:
        p = rng.choice(_TEMPLATES).format(topic=rng.choice(_TOPICS), thing=rng.choice(_THINGS),
                                          name=rng.choice(_NAMES))
        if p not in seen:
            seen.append(p)
    return seen
