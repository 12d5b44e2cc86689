"""Register a launched engine in a running gateway, and take it out again.

    POST   {gateway}/admin/deployments?replace=true   body: the deployment (JSON)
    DELETE {gateway}/admin/deployments/{name}
    both with  Authorization: Bearer <MANXUE_ADMIN_KEY>
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from manxue.engine_launch.commands import LaunchSpec, default_deployment_name, openai_base_url

ADMIN_KEY_ENV = "MANXUE_ADMIN_KEY"
_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)


class RegistrationError(Exception):
    """The gateway refused the deployment, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def deployment_payload(
    spec: LaunchSpec,
    *,
    name: str | None = None,
    base_url: str | None = None,
    priority: int = 0,
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The body of POST /admin/deployments for a launched engine."""
    all_tags = {
        "engine": spec.engine,
        "launched_by": "manxue engine launch",
        "tp": str(spec.tp),
        "dp": str(spec.dp),
        "ep": "true" if spec.ep else "false",
    }
    if spec.quantization:
        all_tags["quantization"] = spec.quantization
    all_tags.update(tags or {})
    return {
        "name": name or default_deployment_name(spec),
        "model": spec.served_model,
        "kind": "openai",
        "base_url": base_url or openai_base_url(spec),
        "upstream_model": spec.served_model,
        "priority": priority,
        "tags": all_tags,
    }


@dataclass
class GatewayClient:
    """The gateway's admin API, as the launcher uses it."""

    gateway: str
    admin_key: str
    attempts: int = 3
    retry_delay: float = 1.0
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return self.gateway.rstrip("/")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}", "Content-Type": "application/json"}

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def register(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Add the deployment, replacing one of the same name (a launcher that died, say)."""
        url = f"{self.base}/admin/deployments?replace=true"
        return await self._call("POST", url, orjson.dumps(payload), ok=(200, 201))

    async def deregister(self, name: str) -> bool:
        """Remove the deployment; False when the gateway did not have it."""
        url = f"{self.base}/admin/deployments/{quote(name, safe='')}"
        try:
            await self._call("DELETE", url, None, ok=(200,))
        except RegistrationError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def deployments(self) -> list[dict[str, Any]]:
        body = await self._call("GET", f"{self.base}/admin/deployments", None, ok=(200,))
        data = body.get("data")
        return data if isinstance(data, list) else []

    async def _call(self, method: str, url: str, body: bytes | None,
                    ok: tuple[int, ...]) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
            try:
                async with self._http().request(method, url, data=body,
                                                 headers=self._headers()) as resp:
                    raw = await resp.read()
                    if resp.status in ok:
                        parsed = _json(raw)
                        return parsed if isinstance(parsed, dict) else {}
                    err = RegistrationError(
                        f"gateway answered {resp.status} to {method} {url}: {_message(raw)}",
                        status=resp.status)
                    if resp.status < 500:
                        raise err  # our request is wrong; trying again will not help
                    last = err
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = RegistrationError(
                    f"cannot reach the gateway at {self.base} ({type(exc).__name__}: {exc})")
        assert last is not None
        raise last


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _message(raw: bytes) -> str:
    obj = _json(raw)
    if isinstance(obj, dict) and isinstance(obj.get("error"), dict):
        return str(obj["error"].get("message"))
    return raw[:300].decode(errors="replace") or "(empty body)"


class Registrar:
    """Keeps one deployment registered while its engine is up.

    `up()` registers it; a background check then re-registers it whenever the gateway no
    longer lists it (the gateway restarted, say: deployments added at run time live in its
    memory). An unreachable gateway is retried; a refusal (4xx) is final and reported through
    `on_fatal`. `down()` stops the check and removes the deployment.
    """

    def __init__(self, client: GatewayClient, payload: dict[str, Any], *, interval: float = 30.0,
                 on_fatal: Callable[[RegistrationError], None] | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.client = client
        self.payload = payload
        self.name = str(payload["name"])
        self.interval = interval
        self.on_fatal = on_fatal
        self.say = say or (lambda text: None)
        self.registered = False
        self.registrations = 0
        self.error: RegistrationError | None = None
        self._task: asyncio.Task[None] | None = None

    async def up(self) -> None:
        """Register now; raises RegistrationError when the gateway refuses (4xx)."""
        try:
            await self._ensure(check_first=False)
        except RegistrationError as exc:
            if _final(exc):
                raise
            self.say(f"warning: {exc}; will keep trying every {self.interval:g} s")
        self._task = asyncio.create_task(self._watch())

    async def down(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.registered:
            self.registered = False
            if await self.client.deregister(self.name):
                self.say(f"deployment {self.name!r} removed from {self.client.base}")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._ensure(check_first=True)
            except RegistrationError as exc:
                if _final(exc):
                    self.error = exc
                    if self.on_fatal is not None:
                        self.on_fatal(exc)
                    return
                self.say(f"warning: {exc}")

    async def _ensure(self, check_first: bool) -> None:
        if check_first and self.registered:
            names = {d.get("name") for d in await self.client.deployments()}
            if self.name in names:
                return
            self.say(f"the gateway no longer lists {self.name!r}; registering it again")
        await self.client.register(self.payload)
        self.registered = True
        self.registrations += 1
        self.say(f"registered deployment {self.name!r} (model {self.payload['model']!r}) "
                 f"in {self.client.base}")


def _final(exc: RegistrationError) -> bool:
    return exc.status is not None and 400 <= exc.status < 500
