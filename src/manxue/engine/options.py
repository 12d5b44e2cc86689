"""Engine options, read from a local deployment's `options` table and checked once at start.

Every option has a default; an unknown name or a value of the wrong type is a ConfigError.

    n_ctx                    8192   KV cells shared by all running sequences (unified KV cache)
    ctx_per_seq              0      longest context of one sequence; 0 = min(training context, n_ctx)
    n_parallel               16     sequences decoded together (llama.cpp n_seq_max)
    n_threads                0      CPU threads for decoding; 0 = os.cpu_count()
    n_threads_batch          0      CPU threads for prompt processing; 0 = n_threads
    n_batch / n_ubatch       512    llama.cpp logical / physical batch size
    prefill_chunk            256    prompt tokens fed per step, shared by all prefilling sequences
    max_queue                64     requests waiting for a free sequence; more are refused (429)
    flash_attn               true   flash attention (much faster prompt processing on CPU)
    n_gpu_layers             0      layers offloaded to a GPU build of llama.cpp
    weight_repack            "auto" repack weights at load for the CPU's fastest kernels (llama.cpp's
                                    extra buffer types): "on", "off", or "auto" = on except where
                                    the CPU has AMX, whose kernels crash in current llama.cpp builds
                                    on prompts of more than a few tokens
    prefix_cache             true   reuse the KV of shared prompt prefixes
    prefix_cache_mb          512    host memory for cached prefixes (least recently used go first)
    prefix_cache_min_tokens  16     shortest prefix worth keeping or reusing
    prefix_cache_dir         ""     directory that keeps cached prefixes across restarts
    prefix_cache_disk_mb     2048   disk budget for that directory
    chat_template            "auto" "auto"/"gguf" (the file's own, else the one its architecture
                                    names, else none: chat refused), a name from
                                    chat_template.NAMED_TEMPLATES, a Jinja template, or a file path
    reasoning                "auto" "auto": a leading <think>…</think> goes to reasoning_content;
                                    "off": all text is content
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any

from manxue.errors import ConfigError

OptionValue = int | float | str | bool


@dataclass(frozen=True, slots=True)
class EngineOptions:
    n_ctx: int = 8192
    ctx_per_seq: int = 0
    n_parallel: int = 16
    n_threads: int = 0
    n_threads_batch: int = 0
    n_batch: int = 512
    n_ubatch: int = 512
    prefill_chunk: int = 256
    max_queue: int = 64
    flash_attn: bool = True
    n_gpu_layers: int = 0
    weight_repack: str = "auto"
    prefix_cache: bool = True
    prefix_cache_mb: int = 512
    prefix_cache_min_tokens: int = 16
    prefix_cache_dir: str = ""
    prefix_cache_disk_mb: int = 2048
    chat_template: str = "auto"
    reasoning: str = "auto"

    @classmethod
    def from_mapping(cls, raw: dict[str, OptionValue], where: str = "options") -> EngineOptions:
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in raw.items():
            field = known.get(name)
            if field is None:
                raise ConfigError(
                    f"{where}: unknown engine option {name!r} (known: {', '.join(sorted(known))})"
                )
            values[name] = _coerce(where, name, value, _DEFAULTS[name])
        opts = cls(**values)
        opts._check(where)
        return opts

    def _check(self, where: str) -> None:
        positive = ("n_ctx", "n_parallel", "n_batch", "n_ubatch", "prefill_chunk")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{where}: {name} must be at least 1")
        for name in ("ctx_per_seq", "n_threads", "n_threads_batch", "max_queue", "n_gpu_layers",
                     "prefix_cache_mb", "prefix_cache_min_tokens", "prefix_cache_disk_mb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{where}: {name} must not be negative")
        if self.n_parallel > 256:
            raise ConfigError(f"{where}: n_parallel is at most 256")
        if self.n_ubatch > self.n_batch:
            raise ConfigError(f"{where}: n_ubatch must not exceed n_batch")
        if self.reasoning not in ("auto", "off"):
            raise ConfigError(f"{where}: reasoning must be 'auto' or 'off'")
        if self.weight_repack not in ("auto", "on", "off"):
            raise ConfigError(f"{where}: weight_repack must be 'auto', 'on' or 'off'")

    @property
    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 1

    @property
    def threads_batch(self) -> int:
        return self.n_threads_batch or self.threads


_DEFAULTS: dict[str, OptionValue] = {f.name: f.default for f in fields(EngineOptions)}  # type: ignore[misc]


def _coerce(where: str, name: str, value: OptionValue, default: OptionValue) -> OptionValue:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: option {name} must be {type(default).__name__}, not {value!r}")
