"""Deployments added while serving, the same on every worker and replica.

With a database (billing on), the admin API writes a deployment to SQL
(accounting/deployment_store.py) and applies it here at once; every other worker and replica
reads the table every `[billing] key_refresh_interval` seconds and adds, replaces or removes
its own copies to match. Deployments from the config file are not in the table and are never
touched, unless one of the same name is added with ?replace=true. Circuit breakers stay per
process: each one sees its own failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from manxue.accounting.deployment_store import DeploymentStore
from manxue.errors import ConfigError
from manxue.gateway import dynamic
from manxue.gateway.deployment import Deployment
from manxue.providers import registry
from manxue.settings import DeploymentSettings

if TYPE_CHECKING:
    from manxue.server.state import AppState

log = logging.getLogger("manxue.server")


def settings_json(settings: DeploymentSettings) -> str:
    """The settings as stored: JSON with the inline upstream key kept (not masked)."""
    data = settings.model_dump(mode="json", exclude_none=True)
    if settings.api_key is not None:
        data["api_key"] = settings.api_key.get_secret_value()
    return json.dumps(data, sort_keys=True)


class DeploymentSync:
    def __init__(self, state: AppState, store: DeploymentStore, interval: float) -> None:
        self.state = state
        self.store = store
        self.interval = interval
        self.applied: dict[str, str] = {}  # name -> the settings JSON applied in this process
        self._task: asyncio.Task[None] | None = None

    # -- what the admin API calls ---------------------------------------------------------------
    async def publish(self, settings: DeploymentSettings, deployment: Deployment,
                      replace: bool) -> Deployment | None:
        """Store the deployment for every replica and serve it here now; the one it replaced
        here, if any. DeploymentExists (nothing stored) for a taken name without `replace`."""
        rows = await asyncio.to_thread(self.store.all)
        if not replace and (settings.name in rows or self.state.router.get(settings.name)):
            raise dynamic.DeploymentExists(settings.name)
        text = settings_json(settings)
        await asyncio.to_thread(self.store.put, settings.name, text)
        old = dynamic.add(self.state.router, deployment, replace=True)
        self.applied[settings.name] = text
        return old

    async def withdraw(self, name: str) -> bool:
        """Remove the deployment here and from the table (so from every replica); False when
        it was in neither."""
        stored = await asyncio.to_thread(self.store.delete, name)
        self.applied.pop(name, None)
        return dynamic.remove(self.state.router, name) is not None or stored

    # -- following the table --------------------------------------------------------------------
    def apply(self, rows: dict[str, str]) -> bool:
        """Make this process serve what the table says; True when something changed."""
        changed = False
        st = self.state
        for name, text in rows.items():
            if self.applied.get(name) == text:
                continue
            self.applied[name] = text  # once, even if it cannot be built here
            try:
                settings = DeploymentSettings.model_validate_json(text)
                if st.meter is not None:
                    st.meter.check_deployment(settings)
                dep = Deployment(registry.create(settings), st.settings.router.breaker)
            except (ConfigError, ValueError) as exc:
                log.error("deployment %r from the database cannot be served here: %s", name, exc)
                continue
            dynamic.add(st.router, dep, replace=True)
            if st.meter is not None:
                st.meter.add_deployment(settings)
            changed = True
        for name in [n for n in self.applied if n not in rows]:
            del self.applied[name]
            dynamic.remove(st.router, name)
            changed = True
        return changed

    async def refresh(self) -> bool:
        return self.apply(await asyncio.to_thread(self.store.all))

    async def _loop(self, on_change: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self.refresh():
                    on_change()
            except Exception:
                log.exception("reading deployments from the database failed; keeping the "
                              "current set")

    def start(self, on_change: Callable[[], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(on_change))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
