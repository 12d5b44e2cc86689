"""The engines' own OpenAI-server command lines, built from one launch spec (pure functions).

vLLM:   python -m vllm.entrypoints.openai.api_server --model M --tensor-parallel-size N ...
SGLang: python -m sglang.launch_server --model-path M --tp-size N ...
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from typing import Literal, get_args

EngineName = Literal["vllm", "sglang"]
ENGINES: tuple[EngineName, ...] = get_args(EngineName)

ENTRYPOINTS: dict[EngineName, str] = {
    "vllm": "vllm.entrypoints.openai.api_server",
    "sglang": "sglang.launch_server",
}
DEFAULT_PORTS: dict[EngineName, int] = {"vllm": 8000, "sglang": 30000}

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to launch. `engine_exec`, when given, replaces `python -m <entrypoint>`."""

    engine: EngineName
    model: str
    host: str = "127.0.0.1"
    port: int | None = None
    tp: int = 1
    dp: int = 1
    pp: int = 1
    ep: bool = False
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None
    gpus_per_node: int | None = None
    """GPUs on each node (None: not known, e.g. a dry run on a machine without them)."""
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    quantization: str | None = None
    served_name: str | None = None
    extra_args: tuple[str, ...] = ()
    python: str = sys.executable
    engine_exec: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if not self.model:
            raise ValueError("--model is empty")
        if self.tp < 1 or self.dp < 1 or self.pp < 1 or self.nnodes < 1:
            raise ValueError("--tp, --dp, --pp and --nnodes must be at least 1")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"--node-rank {self.node_rank} is outside 0..{self.nnodes - 1}")
        if self.nnodes > 1 and self.engine == "sglang" and not self.dist_init_addr:
            raise ValueError("SGLang across nodes needs --dist-init-addr HOST:PORT (node 0's "
                             "address, the same on every node)")
        have = self.gpus_per_node * self.nnodes if self.gpus_per_node else None
        if have is not None and self.tp * self.pp > have:
            hint = (f"add nodes: --nnodes {-(-self.tp * self.pp // self.gpus_per_node)}"  # type: ignore[operator]
                    " (run the command on each, with its --node-rank)")
            raise ValueError(f"tp {self.tp} × pp {self.pp} needs {self.tp * self.pp} GPUs; this "
                             f"launch has {have} ({self.gpus_per_node} per node × {self.nnodes} "
                             f"node(s)): lower --tp/--pp or {hint}")
        if have is not None and self.gpus > have:
            raise ValueError(f"tp {self.tp} × pp {self.pp} × dp {self.dp} needs {self.gpus} GPUs; "
                             f"this launch has {have}: lower --dp")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"--port {self.port} is outside 1..65535")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError("--max-model-len must be positive")
        gmu = self.gpu_memory_utilization
        if gmu is not None and not 0 < gmu <= 1:
            raise ValueError("--gpu-memory-utilization must be in (0, 1]")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS[self.engine]

    @property
    def served_model(self) -> str:
        """The model name the engine answers to (both engines default to the --model value)."""
        return self.served_name or self.model

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp


def build_command(spec: LaunchSpec) -> list[str]:
    """The full argv: executable, entry point, the engine's flags, then the extra arguments."""
    flags = vllm_flags(spec) if spec.engine == "vllm" else sglang_flags(spec)
    return [*command_prefix(spec), *flags, *spec.extra_args]


def command_prefix(spec: LaunchSpec) -> list[str]:
    if spec.engine_exec:
        return list(spec.engine_exec)
    return [spec.python, "-m", ENTRYPOINTS[spec.engine]]


def vllm_flags(spec: LaunchSpec) -> list[str]:
    args = ["--model", spec.model, "--host", spec.host, "--port", str(spec.effective_port)]
    if spec.tp > 1:
        args += ["--tensor-parallel-size", str(spec.tp)]
    if spec.pp > 1:
        args += ["--pipeline-parallel-size", str(spec.pp)]
    if spec.dp > 1:
        args += ["--data-parallel-size", str(spec.dp)]
    if spec.nnodes > 1:  # TP/PP across nodes: vLLM runs its workers on a Ray cluster
        args += ["--distributed-executor-backend", "ray"]
    if spec.ep:
        # vLLM sizes the expert-parallel group itself: TP x DP.
        args.append("--enable-expert-parallel")
    if spec.max_model_len is not None:
        args += ["--max-model-len", str(spec.max_model_len)]
    if spec.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", _num(spec.gpu_memory_utilization)]
    if spec.quantization:
        args += ["--quantization", spec.quantization]
    if spec.served_name:
        args += ["--served-model-name", spec.served_name]
    return args


def sglang_flags(spec: LaunchSpec) -> list[str]:
    args = ["--model-path", spec.model, "--host", spec.host, "--port", str(spec.effective_port)]
    if spec.tp > 1:
        args += ["--tp-size", str(spec.tp)]
    if spec.pp > 1:
        args += ["--pp-size", str(spec.pp)]
    if spec.dp > 1:
        args += ["--dp-size", str(spec.dp)]
    if spec.nnodes > 1:
        args += ["--nnodes", str(spec.nnodes), "--node-rank", str(spec.node_rank),
                 "--dist-init-addr", str(spec.dist_init_addr)]
    if spec.ep:
        # SGLang splits each replica's TP ranks into expert-parallel groups; one group spanning
        # all of them is the usual MoE setup. (--enable-ep-moe is the old, deprecated spelling.)
        args += ["--ep-size", str(spec.tp)]
    if spec.max_model_len is not None:
        args += ["--context-length", str(spec.max_model_len)]
    if spec.gpu_memory_utilization is not None:
        args += ["--mem-fraction-static", _num(spec.gpu_memory_utilization)]
    if spec.quantization:
        args += ["--quantization", spec.quantization]
    if spec.served_name:
        args += ["--served-model-name", spec.served_name]
    return args


def warnings_for(spec: LaunchSpec) -> list[str]:
    """Settings that are legal but probably not what was meant."""
    out = []
    if spec.ep and spec.engine == "vllm" and spec.gpus == 1:
        out.append("--ep over one GPU (tp 1, dp 1) changes nothing")
    if spec.ep and spec.engine == "sglang" and spec.tp == 1:
        out.append("--ep with sglang splits experts across the TP ranks; with --tp 1 it changes nothing")
    if spec.nnodes > 1 and spec.engine == "vllm":
        out.append(f"vLLM across {spec.nnodes} nodes runs on a Ray cluster: start it first "
                   "(`ray start --head` on this node, `ray start --address HEAD:6379` on the "
                   "others) and run this command on the head node only")
    if spec.nnodes > 1 and spec.engine == "sglang" and spec.node_rank > 0:
        out.append(f"node {spec.node_rank} of {spec.nnodes}: the API is served by node 0 "
                   "only; register node 0's address in the gateway")
    if spec.gpus_per_node is None and spec.tp * spec.pp > 1:
        out.append("the GPUs per node are not known here (no nvidia-smi): the parallel sizes "
                   "were not checked against them; pass --gpus-per-node to check")
    if spec.host in _WILDCARDS:
        out.append(f"the engine listens on every interface ({spec.host or '*'}) without an API key; "
                   "keep it behind a firewall or use --host 127.0.0.1")
    return out


def connect_host(host: str) -> str:
    """An address to reach a server bound to `host` from this machine."""
    if host in _WILDCARDS:
        return "127.0.0.1"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def engine_url(spec: LaunchSpec) -> str:
    """The engine's root URL (health at /health, OpenAI API under /v1)."""
    return f"http://{connect_host(spec.host)}:{spec.effective_port}"


def openai_base_url(spec: LaunchSpec) -> str:
    return engine_url(spec) + "/v1"


def default_deployment_name(spec: LaunchSpec) -> str:
    """Unique per engine address: `vllm-127.0.0.1-8000`."""
    host = re.sub(r"[^A-Za-z0-9.]+", "-", connect_host(spec.host)).strip("-")
    return f"{spec.engine}-{host}-{spec.effective_port}"


def shell_join(argv: list[str]) -> str:
    return shlex.join(argv)


def _num(x: float) -> str:
    return format(x, "g")
