"""Which adapter serves which deployment kind: a fixed table of the built-in adapters (there is
no plugin seam; a new kind is a new line in `_BUILTIN`)."""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module

from manxue.errors import ConfigError
from manxue.providers.base import Provider
from manxue.settings import DeploymentSettings

Factory = Callable[[DeploymentSettings], Provider]

# kind -> "module:attribute"; imported on first use so a gateway without local models never
# loads the inference engine.
_BUILTIN: dict[str, str] = {
    "openai": "manxue.providers.openai_compat:OpenAICompatProvider",
    "local": "manxue.providers.local:LocalProvider",
}
_factories: dict[str, Factory] = {}
"""The factories imported so far, by kind."""


def create(settings: DeploymentSettings) -> Provider:
    factory = _factories.get(settings.kind)
    if factory is None:
        target = _BUILTIN.get(settings.kind)
        if target is None:
            raise ConfigError(f"deployment {settings.name!r}: unknown kind {settings.kind!r}")
        module, attr = target.split(":")
        try:
            factory = getattr(import_module(module), attr)
        except ImportError as exc:
            raise ConfigError(
                f"deployment {settings.name!r}: kind {settings.kind!r} is not available here ({exc})"
            ) from None
        _factories[settings.kind] = factory
    return factory(settings)
