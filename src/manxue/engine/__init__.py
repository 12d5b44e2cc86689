"""The embedded inference engine: GGUF models run in-process by llama.cpp's C API, with our own
continuous-batching scheduler, sampling and prefix KV cache (see engine.py).

Names are imported lazily, so `manxue.engine.default_model` can be used without loading
llama.cpp.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Engine": "manxue.engine.engine",
    "acquire_engine": "manxue.engine.engine",
    "release_engine": "manxue.engine.engine",
    "EngineOptions": "manxue.engine.options",
    "default_model_path": "manxue.engine.default_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'manxue.engine' has no attribute {name!r}")
    return getattr(import_module(module), name)
