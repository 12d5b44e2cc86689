"""Add and remove deployments while the gateway serves.

Built on the router's own `get(name)`, `add(deployment)` and `remove(name)`; this module adds
what surrounds them: replacing a deployment of the same name, keeping the cached model list
current, and closing a removed deployment's connections only once its requests are over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from manxue.gateway.deployment import Deployment
from manxue.gateway.router import Router

log = logging.getLogger("manxue.gateway")

RETIRE_GRACE = 600.0
"""Longest wait, in seconds, for a removed deployment's requests before its client closes."""

_retiring: set[asyncio.Task[None]] = set()


class DeploymentExists(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"deployment {name!r} already exists")
        self.name = name


def add(router: Router, deployment: Deployment, *, replace: bool = False) -> Deployment | None:
    """Route to `deployment` from the next request on; return the one it replaced, if any.

    The replaced deployment is retired (see `retire`); without `replace`, an existing name
    raises DeploymentExists and nothing changes.
    """
    old = router.get(deployment.name)
    if old is not None:
        if not replace:
            raise DeploymentExists(deployment.name)
        router.remove(old.name)
    router.add(deployment)
    if old is not None:
        retire(old)
    log.info("deployment %r added: model %r at %s", deployment.name, deployment.settings.model,
             deployment.settings.base_url or deployment.settings.path or "in-process")
    return old


def remove(router: Router, name: str) -> Deployment | None:
    """Stop routing to `name`; its requests in flight finish, then it is closed."""
    dep = router.remove(name)
    if dep is not None:
        retire(dep)
        log.info("deployment %r removed", name)
    return dep


def retire(dep: Deployment, grace: float = RETIRE_GRACE) -> None:
    """Close the deployment's provider once it has no request in flight (or after `grace`)."""
    try:
        task = asyncio.get_running_loop().create_task(_close_when_idle(dep, grace))
    except RuntimeError:  # no loop: nothing can be in flight either
        return
    _retiring.add(task)
    task.add_done_callback(_retiring.discard)


async def _close_when_idle(dep: Deployment, grace: float) -> None:
    deadline = time.monotonic() + grace
    try:
        while True:
            if dep.in_flight <= 0 or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        with contextlib.suppress(Exception):
            await dep.provider.close()


def describe(dep: Deployment) -> dict[str, Any]:
    """One deployment as the admin API shows it (no secrets)."""
    s = dep.settings
    return {
        "object": "deployment",
        "name": s.name,
        "model": s.model,
        "kind": s.kind,
        "base_url": s.base_url,
        "upstream_model": dep.upstream_model,
        "priority": s.priority,
        "weight": s.weight,
        "tags": dict(s.tags),
        "breaker": dep.breaker.state.name.lower(),
        "in_flight": dep.in_flight,
    }
