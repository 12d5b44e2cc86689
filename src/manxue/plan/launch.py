"""`manxue plan … --launch vllm|sglang`: the engine command lines for the planned deployment.

The plan's GPUs are laid out on nodes of the hardware's size (8 for SXM boards):
    vLLM    tensor parallel inside a node, pipeline parallel across nodes (its multi-node
            layout, on a Ray cluster), expert parallel for MoE models;
    SGLang  one tensor-parallel group over every GPU (`--nnodes`, `--node-rank`,
            `--dist-init-addr`: the same command on each node, its own rank), expert
            parallel for MoE models.
The commands come from the same builder as `manxue engine launch`, so the parallel sizes are
checked the same way.
"""

from __future__ import annotations

import re
from typing import Any

from manxue.engine_launch.commands import EngineName, LaunchSpec, build_command, shell_join
from manxue.engine_launch.commands import warnings_for as launch_warnings
from manxue.errors import InvalidParameters
from manxue.plan.capacity import Capacity

NODE0 = "NODE0_ADDRESS"           # placeholder: node 0's private address
_REPO = re.compile(r"\b([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)\b")


def repo_of(source: str, fallback: str) -> str:
    """The model repository a catalog source names (e.g. deepseek-ai/DeepSeek-R1)."""
    found = _REPO.search(source)
    return found.group(1) if found else fallback


def launch_plan(cap: Capacity, engine: str, python: str = "python3") -> dict[str, Any]:
    d = cap.deployment
    if engine not in ("vllm", "sglang"):
        raise InvalidParameters("--launch takes vllm or sglang", param="launch")
    if d.hw.kind != "gpu":
        raise InvalidParameters(
            f"{d.hw.name} is not a GPU: vLLM and SGLang launch commands are for GPUs; serve a "
            "GGUF on it with `manxue serve` (the embedded llama.cpp engine)", param="launch")
    if not cap.memory.fits:
        raise InvalidParameters(
            f"the plan does not fit: launch needs at least {cap.memory.min_gpus_to_fit} GPUs "
            f"({cap.memory.min_nodes_to_fit} node(s)); raise --gpus", param="launch")
    per_node = max(1, d.hw.per_node)
    if d.gpus > per_node and d.gpus % per_node:
        raise InvalidParameters(f"{d.gpus} GPUs do not make whole nodes of {per_node}: use a "
                                f"multiple of {per_node}", param="gpus")
    nnodes = max(1, -(-d.gpus // per_node))
    in_node = min(d.gpus, per_node)
    name: EngineName = "vllm" if engine == "vllm" else "sglang"
    tp, pp = (in_node, nnodes) if name == "vllm" else (d.gpus, 1)
    native = d.model.native_precision
    quant = "fp8" if cap.precision.name == "fp8" and native != "fp8" else None
    model = repo_of(d.model.source, d.model.id)
    nodes = []
    ranks = range(nnodes) if name == "sglang" else range(1)
    for rank in ranks:
        spec = LaunchSpec(
            engine=name, model=model, host="0.0.0.0", tp=tp, pp=pp, ep=d.model.is_moe,
            nnodes=nnodes, node_rank=rank,
            dist_init_addr=f"{NODE0}:5000" if nnodes > 1 and name == "sglang" else None,
            gpus_per_node=in_node, max_model_len=d.context,
            gpu_memory_utilization=round(1 - d.overhead, 2), quantization=quant,
            served_name=d.model.id, python=python)
        nodes.append({"node_rank": rank, "command": shell_join(build_command(spec)),
                      "notes": launch_warnings(spec)})
    return {"engine": name, "model": model, "nodes": nnodes, "gpus_per_node": in_node,
            "tensor_parallel": tp, "pipeline_parallel": pp, "expert_parallel": d.model.is_moe,
            "commands": nodes,
            "then": f"register http://{NODE0}:{8000 if name == 'vllm' else 30000}/v1 as a "
                    f"deployment of {d.model.id} (config [[deployments]] or the admin API), or "
                    f"run `manxue engine launch {name} …` on node 0, which registers it itself"}
