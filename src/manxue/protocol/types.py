"""The terms the layers share about one request: its context, what it came to, who records it.

Like Starlette's `types.py`, this module imports nothing of manxue outside `protocol/`, so the
server, the gateway and accounting can all name these without importing one another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from manxue.protocol.usage import Usage


class ApiRequest(Protocol):
    """What admission and the usage path read of any request (chat, completions, embeddings):
    the other fields are each endpoint's own."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def max_tokens(self) -> int | None: ...

    @property
    def max_completion_tokens(self) -> int | None: ...

    @property
    def wants_usage_chunk(self) -> bool: ...

    @property
    def choices(self) -> int:
        """Answers the request asks for: each is billed, so each is reserved."""
        ...


class Holding(Protocol):
    """A deployment acquired for a stream whose relay has not started yet."""

    @property
    def deployment(self) -> str: ...  # its name, recorded if the request settles from here

    async def give_back(self) -> None: ...  # close the stream and release the deployment


@dataclass(slots=True)
class RequestContext:
    request_id: str
    model: str
    stream: bool
    local_only: bool = False
    started: float = field(default_factory=time.perf_counter)
    first_byte_at: float | None = None
    ticket: object | None = None  # what admission decided, read back by accounting at settlement
    client_request_id: str | None = None  # the client's own id for the request, if it sent one
    settled: bool = False  # set by the one settlement; `finish` settles what never got there
    holding: Holding | None = None  # given back by `finish` if its stream is never relayed


@dataclass(slots=True)
class Outcome:
    """What one request came to, handed to every usage sink exactly once."""

    ctx: RequestContext
    deployment: str
    usage: Usage | None
    completed: bool
    attempts: int
    seconds: float
    ttft: float | None
    extra: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None  # the whole answer, when not streamed
    payloads: list[bytes] | None = None  # the stream's events as relayed


class UsageSink(Protocol):
    def record(self, outcome: Outcome) -> None: ...
