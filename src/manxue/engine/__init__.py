"""The embedded inference engine: GGUF models run in-process by llama.cpp's C API, with our own
continuous-batching scheduler, sampling and prefix KV cache (see engine.py).

Names are imported lazily, so `manxue.engine.default_model` can be used without loading
llama.cpp.
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import Any

# llama.cpp's CPU threads meet at a barrier after every graph node. OpenMP's default is to
# spin there for milliseconds; when the machine is busy with anything else, a spinning thread
# keeps the one it waits for off the CPU and decoding slows down 10-50x. Waiting passively
# costs little when the cores are idle and keeps the engine usable when they are not. This
# must be set before llama.cpp is loaded; an explicit OMP_WAIT_POLICY (e.g. "active" on
# dedicated cores) wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_EXPORTS = {
    "Engine": "manxue.engine.engine",
    "acquire_engine": "manxue.engine.engine",
    "release_engine": "manxue.engine.engine",
    "EngineOptions": "manxue.engine.options",
    "Scored": "manxue.engine.scoring",
    "default_model_path": "manxue.engine.default_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'manxue.engine' has no attribute {name!r}")
    return getattr(import_module(module), name)
