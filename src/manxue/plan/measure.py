"""`manxue plan measure`: time the embedded engine here and set it beside the planner's answer.

1. This host as hardware: memory bandwidth (parallel copies of a 512 MB buffer) and SIMD
   throughput (a float32 matrix product), unless `--hardware` names a catalog entry.
2. The engine (the shipped SmolLM2 or `--model FILE`): prefill of one long prompt with the
   prefix cache off, then decode at each batch, every sequence generating exactly `tokens`
   tokens (end-of-turn tokens masked).
3. The calibrated prediction for the same model, hardware, batch and context, and the ratio.
4. With `--save`, the measurements become calibration rows for this hardware (a TOML file in
   the data directory, read by every later plan on this machine).
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from manxue.plan.specs import HardwareSpec

HOST_ID = "this-host"
LOCAL_FILE = "plan-calibration.toml"
_WORDS = ("river", "lamp", "garden", "window", "signal", "harbor", "market", "winter", "copper",
          "violin", "engine", "forest", "letter", "bridge", "planet", "mirror")


@dataclass(frozen=True, slots=True)
class Timing:
    phase: str          # "prefill" | "decode"
    batch: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def _best(fn: Callable[[], float], repeats: int = 3) -> float:
    return min(fn() for _ in range(repeats))


def host_hardware(threads: int | None = None) -> HardwareSpec:
    """This machine as a catalog entry: measured bandwidth and float32 matrix throughput."""
    import numpy as np

    n = threads or os.cpu_count() or 1
    size = 128 * 2**20            # float32 elements: 512 MB
    src = np.ones(size, dtype=np.float32)
    dst = np.empty_like(src)
    chunks = np.array_split(np.arange(size), n)
    bounds = [(int(c[0]), int(c[-1]) + 1) for c in chunks if len(c)]

    def copy() -> float:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(bounds)) as pool:
            list(pool.map(lambda b: np.copyto(dst[b[0]:b[1]], src[b[0]:b[1]]), bounds))
        return time.perf_counter() - t0

    bandwidth = 2 * src.nbytes / _best(copy)          # read + write
    m = 1024
    a = np.random.default_rng(0).random((m, m), dtype=np.float32)

    def matmul() -> float:
        t0 = time.perf_counter()
        a @ a
        return time.perf_counter() - t0

    flops = 2 * m ** 3 / _best(matmul, 5)
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return HardwareSpec(
        id=HOST_ID, name=f"this host ({n} threads)", kind="cpu", memory_gb=round(memory, 1),
        bandwidth_tbs=bandwidth / 1e12, bf16_tflops=flops / 1e12, vector_tflops=flops / 1e12,
        interconnect="none", per_node=1, unit="host",
        source="measured by manxue plan measure: parallel buffer copies (bandwidth) and a "
               "float32 matrix product (compute)")


def _prompt(count: int, tokenize: Callable[[str], list[int]], seed: int = 0) -> str:
    words: list[str] = []
    i = seed
    while len(tokenize(" ".join(words))) < count:
        words.extend(_WORDS[(i + k) % len(_WORDS)] for k in range(16))
        i += 7
    while words and len(tokenize(" ".join(words))) > count:
        words.pop()
    return " ".join(words)


async def _finish(engine: Any, body: dict[str, Any]) -> tuple[float, float, int]:
    """Submit one request; (time of its first token, time it finished, tokens generated)."""
    from manxue.engine.handles import Delta, Failed, Finished

    handle = engine.submit(engine.prepare(body))
    first = 0.0
    while True:
        for event in await handle.next():
            if isinstance(event, Delta) and not first:
                first = time.perf_counter()
            elif isinstance(event, Finished):
                return first or time.perf_counter(), time.perf_counter(), \
                    event.usage.completion_tokens
            elif isinstance(event, Failed):
                raise event.error


async def _time_engine(path: Path, batches: Sequence[int], prompt_tokens: int, tokens: int,
                       threads: int | None, progress: Callable[[str], None]) -> list[Timing]:
    import numpy as np

    from manxue.engine.engine import Engine
    from manxue.engine.options import EngineOptions

    most = max(batches)
    engine = Engine(path, EngineOptions(
        n_ctx=max(4096, prompt_tokens + 64, most * (tokens + 96)), n_parallel=most,
        n_threads=threads or 0, prefix_cache=False, max_queue=most + 4))
    try:
        def tokenize(text: str) -> list[int]:
            return list(engine.tokenize_prompt(text))

        no_end = {str(int(i)): -100 for i in np.flatnonzero(engine.model.eog_mask)}
        timings = []
        progress(f"prefill of {prompt_tokens} tokens")
        text = _prompt(prompt_tokens, tokenize)
        await _finish(engine, {"messages": [{"role": "user", "content": "warm up"}],
                               "max_tokens": 2})
        t0 = time.perf_counter()
        first, _, _ = await _finish(engine, {"messages": [{"role": "user", "content": text}],
                                             "max_tokens": 1})
        used = len(engine.prepare({"messages": [{"role": "user", "content": text}]}).prompt)
        timings.append(Timing("prefill", 1, used, first - t0))
        for b in batches:
            progress(f"decode at batch {b}, {tokens} tokens each")
            bodies = [{"messages": [{"role": "user", "content": f"Tell a story about "
                                     f"{_WORDS[i % len(_WORDS)]} number {i}."}],
                       "max_tokens": tokens, "logit_bias": no_end, "temperature": 0.8}
                      for i in range(b)]
            done = await asyncio.gather(*(_finish(engine, body) for body in bodies))
            made = sum(d[2] for d in done) - len(done)  # tokens after each first one
            timings.append(Timing("decode", b, made, _span(done)))
        return timings
    finally:
        engine.close()


def _span(done: Sequence[tuple[float, float, int]]) -> float:
    """Wall seconds from the first sequence's first token to the last one's end: the tokens
    generated after each first token are spread over it (the batch's prefills overlap it a
    little, which makes the figure a slight underestimate)."""
    return max(max(d[1] for d in done) - min(d[0] for d in done), 1e-9)


def predicted(model: Any, hw: HardwareSpec, batch: int, context: int,
              phase: str) -> dict[str, float]:
    from manxue.plan.calibrated import plan_calibrated
    from manxue.plan.capacity import Deployment

    cal = plan_calibrated(Deployment(model, hw, 1, None, context), batch, engine="manxue")
    r = cal.ranges()
    key = "prefill_tokens_per_s" if phase == "prefill" else "decode_tokens_per_s"
    return {"expected": r[key]["value"], "low": r[key]["low"], "high": r[key]["high"],
            "bound": cal.bound.prefill_tokens_per_s if phase == "prefill"
            else cal.bound.decode_tokens_per_s}


def measure(model_path: Path, batches: Sequence[int], prompt_tokens: int, tokens: int,
            threads: int | None, hardware: HardwareSpec | None,
            progress: Callable[[str], None]) -> dict[str, Any]:
    from manxue.plan.catalog import model_from_path

    progress("measuring this host (memory bandwidth, float32 matrix product)")
    hw = hardware or host_hardware(threads)
    model = model_from_path(model_path)
    timings = asyncio.run(_time_engine(model_path, batches, prompt_tokens, tokens, threads,
                                       progress))
    rows = []
    for t in timings:
        context = prompt_tokens if t.phase == "prefill" else 64 + tokens // 2
        p = predicted(model, hw, t.batch, context, t.phase)
        rows.append({"phase": t.phase, "batch": t.batch, "context": context,
                     "measured_tokens_per_s": round(t.tokens_per_s, 2),
                     "predicted_tokens_per_s": round(p["expected"], 2),
                     "predicted_low": round(p["low"], 2), "predicted_high": round(p["high"], 2),
                     "bound_tokens_per_s": round(p["bound"], 2),
                     "measured_over_predicted": round(t.tokens_per_s / p["expected"], 3)
                     if p["expected"] else None})
    return {"model": str(model_path), "model_name": model.name, "hardware": _hw_dict(hw),
            "threads": threads or os.cpu_count(), "rows": rows}


def _hw_dict(hw: HardwareSpec) -> dict[str, Any]:
    return {"id": hw.id, "name": hw.name, "kind": hw.kind, "memory_gb": hw.memory_gb,
            "bandwidth_tbs": round(hw.bandwidth_tbs, 5), "bf16_tflops": round(hw.bf16_tflops, 4),
            "vector_tflops": round(hw.vector_tflops or hw.bf16_tflops, 4),
            "interconnect": hw.interconnect or "none", "per_node": 1, "unit": hw.unit_name,
            "source": hw.source}


def save_points(path: Path, result: dict[str, Any]) -> int:
    """Write the measurements as calibration rows for this hardware (replacing earlier rows
    of the same hardware and model). Returns the number of rows written."""
    doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    hw = result["hardware"]
    hardware = [h for h in doc.get("hardware", []) if h.get("id") != hw["id"]] + [hw]
    mine = f"measured-{hw['id']}-{Path(result['model']).stem.lower()}"
    anchors = [a for a in doc.get("anchor", []) if not str(a.get("id", "")).startswith(mine)]
    for r in result["rows"]:
        anchors.append({
            "id": f"{mine}-{r['phase']}-b{r['batch']}", "engine": "manxue",
            "label": f"manxue, {result['model_name']} on {hw['name']}, {r['phase']}"
                     + (f" at batch {r['batch']}" if r["phase"] == "decode" else ""),
            "model": result["model"], "hardware": hw["id"], "gpus": 1, "precision": "",
            "context": r["context"], "phase": r["phase"], "published": r["measured_tokens_per_s"],
            **({"batch": r["batch"]} if r["phase"] == "decode" else {}),
            "source": "measured here by manxue plan measure"})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_toml(hardware, anchors), encoding="utf-8")
    return len(result["rows"])


def _toml(hardware: list[dict[str, Any]], anchors: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = ["# Calibration rows measured on this machine (manxue plan measure --save)."]
    for table, items in (("hardware", hardware), ("anchor", anchors)):
        for item in items:
            out.append(f"\n[[{table}]]")
            out.extend(f"{k} = {value(v)}" for k, v in item.items())
    return "\n".join(out) + "\n"
