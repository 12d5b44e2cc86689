"""Helpers shared by tests: handles on loopback servers and deployment entries."""

from __future__ import annotations

from typing import Any

import openai

from manxue.testing.deepseek_emulator import DeepSeekEmulator
from manxue.testing.loopback import LoopbackServer


class Upstream:
    def __init__(self, emu: DeepSeekEmulator, server: LoopbackServer) -> None:
        self.emu = emu
        self.server = server
        self.url = server.url


class Gateway:
    def __init__(self, server: LoopbackServer) -> None:
        self.server = server
        self.url = server.url
        self.app = server._app_or_factory

    def client(self, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", 20)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=kw.pop("api_key", "sk-test"), **kw)


def deployment(up: Upstream, name: str, model: str = "deepseek-chat", **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "model": model, "kind": "openai", "base_url": up.url,
                         "upstream_model": "deepseek-chat"}
    d.update(kw)
    return d


