"""Which adapter serves which deployment kind. Adapters register a factory under their kind."""

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


def register(kind: str, factory: Factory) -> None:
    _factories[kind] = factory


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
