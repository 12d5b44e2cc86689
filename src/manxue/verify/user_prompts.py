"""Questions that read like ordinary users' traffic, drawn per audit from seeded parts.

An endpoint that wants to recognise an audit and route it to the genuine model looks for fixed
probe texts, `logprobs`, tiny `max_tokens` or temperature 0. These prompts are composed from
thousands of combinations of everyday tasks, and the requests that carry them use the
parameters ordinary clients send (see `request_for`), so nothing tells them from the rest.
"""

from __future__ import annotations

from random import Random
from typing import Any

_SUBJECTS = (
    "the water cycle", "compound interest", "photosynthesis", "a sourdough starter",
    "the French Revolution", "black holes", "machine learning", "the stock market", "vaccines",
    "climate change", "the Great Wall of China", "electric cars", "coffee roasting", "jazz",
    "the Roman Empire", "plate tectonics", "inflation", "solar panels", "the human heart",
    "honeybees", "the printing press", "cloud computing", "marathon training", "tea ceremonies",
    "volcanoes", "the Silk Road", "quantum computers", "recycling", "sleep", "chess openings",
    "the moon landing", "rainforests", "budget travel", "public libraries", "origami",
    "the Olympic Games", "container gardening", "password security", "the Renaissance",
    "ocean tides", "fermentation", "city parks", "noise-cancelling headphones", "dinosaurs",
)
_TASKS = (
    "Explain {s} to a ten-year-old in two sentences.",
    "What is the most surprising fact about {s}? Answer briefly.",
    "Give me three quick tips about {s}.",
    "Summarize {s} in one short paragraph.",
    "Write a haiku about {s}.",
    "What are the pros and cons of {s}? Keep it short.",
    "I have a presentation about {s} tomorrow. Suggest a catchy title and one opening line.",
    "Tell me a fun fact about {s}.",
    "How would you describe {s} to someone from the 1800s? One or two sentences.",
    "Write a tweet about {s}.",
    "What is a common misconception about {s}?",
    "List two questions a curious student might ask about {s}.",
    "用两句话解释{s}。",
    "关于{s}，有什么有趣的事实？请简短回答。",
)
_ASIDES = ("", "", "", "Thanks!", "Please be concise.", "No need for details.", "Quick one:")
TEMPERATURES = (0.6, 0.7, 0.8, 1.0)
MAX_TOKENS = (150, 200, 256, 300)


def user_prompts(seed: int, count: int) -> list[str]:
    """`count` distinct everyday prompts for this seed."""
    rng = Random(f"user:{seed}")
    out: list[str] = []
    while len(out) < count:
        text = rng.choice(_TASKS).format(s=rng.choice(_SUBJECTS))
        aside = rng.choice(_ASIDES)
        if aside:
            text = f"{aside} {text}" if aside.endswith(":") else f"{text} {aside}"
        if text not in out:
            out.append(text)
    return out


def request_for(prompt: str, rng: Random) -> dict[str, Any]:
    """A chat body as an ordinary client sends it: a temperature, a max_tokens, nothing else
    unusual (no logprobs, no seed, no top_k)."""
    body: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}],
                            "temperature": rng.choice(TEMPERATURES),
                            "max_tokens": rng.choice(MAX_TOKENS)}
    if rng.random() < 0.3:
        body["messages"].insert(0, {"role": "system", "content": "You are a helpful assistant."})
    return body
