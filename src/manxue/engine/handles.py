"""What a caller hands the engine (a GenerationRequest) and gets back (a Handle of events).

The engine thread appends events to a handle and wakes the caller's event loop with one
`call_soon_threadsafe` per loop and step; the caller awaits `Handle.next()`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from manxue.engine.sampling import SamplingParams
from manxue.engine.scoring import ScoreState
from manxue.errors import ManxueError
from manxue.protocol.usage import Usage

_ids = itertools.count(1)


@dataclass(slots=True)
class GenerationRequest:
    prompt: npt.NDArray[np.int32]
    params: SamplingParams
    max_new_tokens: int
    """Already capped so that prompt + answer fit the sequence's context."""
    reasoning: bool = True
    starts_in_reasoning: bool = False
    grammar: str | None = None
    """GBNF the answer must follow (llama.cpp's grammar sampler; engine/grammar.py)."""
    tool_mode: str | None = None
    """"forced" or "auto": the answer may be a tool call (engine/tools.py); None: text."""
    tool_names: tuple[str, ...] = ()
    tool_format: str | None = None
    """The template's own tool-call format (engine/tool_formats.py); None: the generic one."""
    tool_schemas: dict[str, Any] = field(default_factory=dict)
    """Each function's parameters schema, by name."""
    score: ScoreState | None = None
    """Set for a scoring request (scoring.py): `prompt` is context + continuation[:-1], read
    with logits for the continuation's positions; nothing is generated."""


@dataclass(slots=True)
class Delta:
    content: str
    reasoning: str
    logprobs: list[dict[str, Any]] | None
    generated: int
    """Tokens generated so far (the first Delta comes with the first token, maybe empty)."""


@dataclass(slots=True)
class Finished:
    reason: str  # "stop" | "length" | "scored"
    usage: Usage


@dataclass(slots=True)
class Failed:
    error: ManxueError


Event = Delta | Finished | Failed


@dataclass(eq=False)
class Handle:
    """One request's end of the engine: events in order, then Finished or Failed."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    id: int = field(default_factory=lambda: next(_ids))
    cancelled: bool = False
    done: bool = False
    _events: deque[Event] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _cancel_hook: Any = None

    def push(self, event: Event) -> None:
        """Engine thread: queue an event (the engine wakes the loop after the step)."""
        self._events.append(event)

    def wake(self) -> None:
        """Event-loop thread: let `next()` return."""
        self._ready.set()

    async def next(self) -> list[Event]:
        """Wait for and take every queued event."""
        while not self._events:
            self._ready.clear()
            if self._events:
                break
            await self._ready.wait()
        out = list(self._events)
        for _ in range(len(out)):
            self._events.popleft()
        return out

    def cancel(self) -> None:
        """Stop generating (client gone); frees the sequence within one engine step."""
        if self.cancelled or self.done:
            return
        self.cancelled = True
        if self._cancel_hook is not None:
            self._cancel_hook(self)


async def events_of(handle: Handle, first: list[Event]) -> AsyncGenerator[Delta | Finished, None]:
    """A generation's events, from the `first` batch already read: each Delta, then the
    Finished; a Failed is raised as its error."""
    events = first
    while True:
        for ev in events:
            if isinstance(ev, Failed):
                raise ev.error
            yield ev
            if isinstance(ev, Finished):
                return
        events = await handle.next()
