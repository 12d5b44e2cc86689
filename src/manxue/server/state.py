"""What the routes share: built once at start, stored on the aiohttp application."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from manxue.accounting.meter import Meter
from manxue.accounting.stored_responses import ResponseStore
from manxue.gateway.router import Router
from manxue.gateway.service import ChatService
from manxue.metrics import Metrics
from manxue.server.client_address import ProxyRule
from manxue.settings import Settings

if TYPE_CHECKING:
    from manxue.server.deployment_sync import DeploymentSync


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    router: Router
    chat: ChatService
    models_body: bytes = b""
    meter: Meter | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    proxies: ProxyRule = field(default_factory=ProxyRule)
    responses: ResponseStore | None = None  # the Responses API's stored answers
    deployments: DeploymentSync | None = None  # run-time deployments shared through SQL
    draining: bool = False  # set on SIGTERM: /ready answers 503 while requests finish
    counting: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    """count_tokens' tokenizing, one at a time (it is free, and a long prompt takes a core)."""
    counting_keys: set[str] = field(default_factory=set)  # keys with a count in flight
    counting_tasks: set[asyncio.Task[int]] = field(default_factory=set)  # held until they end


STATE_KEY = web.AppKey("manxue_state", AppState)


def state_of(request: web.Request) -> AppState:
    return request.app[STATE_KEY]


def local_client(request: web.Request) -> bool:
    """Whether the client is on this machine, believing forwarding headers only from trusted
    proxies (server/client_address.py)."""
    return request.app[STATE_KEY].proxies.is_local(request)
