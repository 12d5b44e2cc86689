"""`n` > 1 on the local engine: n sequences over one prompt, merged into one answer.

Each choice is a sequence of its own (its own random stream: `seed + i` when a seed is given),
submitted together, so the scheduler computes the shared prompt once and the others wait for
and reuse its cells (prefix sharing), then each samples on its own. Their chunks are merged
as they come, re-indexed 0..n-1 under one id; usage counts the prompt once and every
choice's answer tokens, as OpenAI reports it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

from manxue.protocol.usage import Usage

MAX_CHOICES = 16
_DONE = object()

ChunkSource = Callable[[dict[str, Any]], AsyncGenerator[dict[str, Any], None]]


def choice_bodies(body: dict[str, Any], n: int) -> list[dict[str, Any]]:
    seed = body.get("seed")
    return [{**body, "n": 1, "seed": (seed + i) if isinstance(seed, int) else None}
            for i in range(n)]


async def merged(body: dict[str, Any], n: int, source: ChunkSource
                 ) -> AsyncGenerator[dict[str, Any], None]:
    """The chunks of n single-choice generations, as one n-choice answer."""
    gens = [source(b) for b in choice_bodies(body, n)]
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(i: int, gen: AsyncGenerator[dict[str, Any], None]) -> None:
        try:
            async for chunk in gen:
                await queue.put((i, chunk))
            await queue.put((i, _DONE))
        except Exception as exc:  # handed to the consumer, which raises it
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    head: dict[str, Any] | None = None
    usages: list[Usage] = []
    running = n
    try:
        while running:
            i, item = await queue.get()
            if item is _DONE:
                running -= 1
                continue
            if isinstance(item, BaseException):
                raise item
            if head is None:
                head = {k: item[k] for k in ("id", "object", "created", "model") if k in item}
            if item.get("usage") is not None:
                u = Usage.from_dict(item["usage"])
                if u is not None:
                    usages.append(u)
            if not item.get("choices"):
                continue
            yield {**item, **head, "choices": [{**c, "index": i} for c in item["choices"]]}
        if head is not None and usages:
            first = usages[0]
            total = Usage(first.prompt_tokens, sum(u.completion_tokens for u in usages),
                          first.cache_hit_tokens, first.cache_miss_tokens,
                          sum(u.reasoning_tokens for u in usages))
            yield {**head, "choices": [], "usage": total.to_dict()}
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for gen in gens:
            with contextlib.suppress(Exception):
                await gen.aclose()
