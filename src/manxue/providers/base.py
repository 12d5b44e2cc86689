"""The Provider protocol every upstream adapter implements.

A provider answers one attempt. It returns only once the first real byte of the answer is in
hand (the whole body when not streaming, the first data event when streaming), so the router
can still retry, fail over or hedge until then. Errors are raised as `UpstreamError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from manxue.protocol.completions import Endpoint
from manxue.settings import DeploymentSettings

KeepAliveHook = Callable[[], Awaitable[None]]
"""Called while a stream waits for its first data event and the upstream says it is alive."""


@dataclass(slots=True)
class Completion:
    """A whole non-streaming answer: the bytes to relay and the parsed object."""

    body: bytes
    data: dict[str, Any]


class ChunkStream(Protocol):
    """The rest of a stream after its first data event.

    Iterating yields each event's JSON payload (the bytes after `data: `), the first one
    included, and stops at `[DONE]`. A stream that breaks before `[DONE]` raises UpstreamError.
    """

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    settings: DeploymentSettings

    async def complete(self, body: dict[str, Any], endpoint: Endpoint = "chat") -> Completion:
        """`endpoint`: which API the body is for (chat, text completions, FIM, embeddings); a
        provider that does not serve it raises the 4xx that says so."""
        ...

    async def stream(self, body: dict[str, Any], on_keepalive: KeepAliveHook | None,
                     endpoint: Endpoint = "chat") -> ChunkStream:
        ...

    async def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What `/v1/models` and `manxue models` show about this deployment."""
        ...


@dataclass(slots=True)
class BufferedStream:
    """A ChunkStream over an async iterator, with its first payload already read."""

    first: bytes
    rest: AsyncIterator[bytes]
    closer: Callable[[], Awaitable[None]] | None = None
    _closed: bool = field(default=False)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            yield self.first
            async for payload in self.rest:
                yield payload
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.closer is not None:
            await self.closer()
