"""Engine command lines and --dry-run: pure, no process is started."""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

from manxue.engine_launch.cli import engine_app
from manxue.engine_launch.commands import (
    LaunchSpec,
    build_command,
    default_deployment_name,
    openai_base_url,
    warnings_for,
)
from manxue.engine_launch.register import deployment_payload


def _flags(argv: list[str]) -> dict[str, str | None]:
    """--flag value pairs (None for a bare flag), after the `python -m module` prefix."""
    out: dict[str, str | None] = {}
    rest = argv[3:]
    for i, a in enumerate(rest):
        if a.startswith("--"):
            nxt = rest[i + 1] if i + 1 < len(rest) else None
            out[a] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def test_vllm_command_with_tp_dp_ep_quantization() -> None:
    spec = LaunchSpec("vllm", "deepseek-ai/DeepSeek-V3", tp=8, dp=2, ep=True, port=8001,
                      max_model_len=32768, gpu_memory_utilization=0.9, quantization="fp8",
                      served_name="deepseek-chat", python="/opt/venv/bin/python")
    argv = build_command(spec)
    assert argv[:3] == ["/opt/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert _flags(argv) == {
        "--model": "deepseek-ai/DeepSeek-V3", "--host": "127.0.0.1", "--port": "8001",
        "--tensor-parallel-size": "8", "--data-parallel-size": "2",
        "--enable-expert-parallel": None, "--max-model-len": "32768",
        "--gpu-memory-utilization": "0.9", "--quantization": "fp8",
        "--served-model-name": "deepseek-chat",
    }


def test_sglang_command_with_tp_dp_ep_quantization() -> None:
    spec = LaunchSpec("sglang", "/models/DeepSeek-V3", tp=8, dp=2, ep=True, max_model_len=16384,
                      gpu_memory_utilization=0.85, quantization="fp8", served_name="ds",
                      python="python3")
    argv = build_command(spec)
    assert argv[:3] == ["python3", "-m", "sglang.launch_server"]
    assert _flags(argv) == {
        "--model-path": "/models/DeepSeek-V3", "--host": "127.0.0.1", "--port": "30000",
        "--tp-size": "8", "--dp-size": "2", "--ep-size": "8", "--context-length": "16384",
        "--mem-fraction-static": "0.85", "--quantization": "fp8", "--served-model-name": "ds",
    }


def test_defaults_are_minimal_and_extra_args_come_last() -> None:
    spec = LaunchSpec("vllm", "m", python="py", extra_args=("--trust-remote-code", "--seed", "1"))
    assert build_command(spec) == ["py", "-m", "vllm.entrypoints.openai.api_server", "--model", "m",
                                   "--host", "127.0.0.1", "--port", "8000",
                                   "--trust-remote-code", "--seed", "1"]


def test_engine_exec_replaces_the_prefix() -> None:
    spec = LaunchSpec("sglang", "m", port=9, engine_exec=("srun", "--gpus=8", "python", "-m", "x"))
    assert build_command(spec)[:6] == ["srun", "--gpus=8", "python", "-m", "x", "--model-path"]


@pytest.mark.parametrize("bad", [dict(tp=0), dict(dp=0), dict(port=70000),
                                 dict(gpu_memory_utilization=1.5), dict(max_model_len=0),
                                 dict(model="")])
def test_invalid_specs_are_refused(bad: dict[str, object]) -> None:
    kw: dict[str, object] = {"engine": "vllm", "model": "m"} | bad
    with pytest.raises(ValueError):
        LaunchSpec(**kw)  # type: ignore[arg-type]


def test_wildcard_host_is_reached_on_loopback_and_warned() -> None:
    spec = LaunchSpec("vllm", "m", host="0.0.0.0", port=8100)
    assert openai_base_url(spec) == "http://127.0.0.1:8100/v1"
    assert default_deployment_name(spec) == "vllm-127.0.0.1-8100"
    assert any("every interface" in w for w in warnings_for(spec))
    assert openai_base_url(LaunchSpec("vllm", "m", host="::1", port=1)) == "http://[::1]:1/v1"


def test_deployment_payload() -> None:
    spec = LaunchSpec("sglang", "/m/ds", tp=4, ep=True, quantization="fp8", served_name="ds",
                      port=30001)
    assert deployment_payload(spec, priority=1, tags={"site": "a"}) == {
        "name": "sglang-127.0.0.1-30001", "model": "ds", "kind": "openai",
        "base_url": "http://127.0.0.1:30001/v1", "upstream_model": "ds", "priority": 1,
        "tags": {"engine": "sglang", "launched_by": "manxue engine launch", "tp": "4", "dp": "1",
                 "ep": "true", "quantization": "fp8", "site": "a"},
    }


def test_dry_run_prints_the_command_and_the_deployment() -> None:
    result = CliRunner().invoke(engine_app, [
        "launch", "vllm", "--model", "deepseek-ai/DeepSeek-R1", "--tp", "8", "--ep",
        "--served-name", "deepseek-reasoner", "--python", "python3", "--port", "8200",
        "--gateway", "http://127.0.0.1:8765", "--dry-run", "--", "--trust-remote-code"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "command:"
    assert shlex.split(lines[1]) == [
        "python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "deepseek-ai/DeepSeek-R1",
        "--host", "127.0.0.1", "--port", "8200", "--tensor-parallel-size", "8",
        "--enable-expert-parallel", "--served-model-name", "deepseek-reasoner", "--trust-remote-code"]
    assert "POST http://127.0.0.1:8765/admin/deployments" in result.stdout
    payload = json.loads(result.stdout[result.stdout.index("{"):])
    assert payload["model"] == "deepseek-reasoner"
    assert payload["base_url"] == "http://127.0.0.1:8200/v1"


def test_dry_run_shell_quotes_odd_arguments() -> None:
    result = CliRunner().invoke(engine_app, [
        "launch", "sglang", "-m", "/models/my model", "--python", "python3", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "--model-path '/models/my model'" in result.stdout
    assert "nothing (no --gateway)" in result.stdout


def test_gateway_without_admin_key_is_a_usage_error() -> None:
    result = CliRunner().invoke(engine_app, [
        "launch", "vllm", "-m", "m", "--gateway", "http://127.0.0.1:1"])
    assert result.exit_code == 2
    assert "admin key" in result.output


def test_unknown_option_is_refused_unless_after_double_dash() -> None:
    assert CliRunner().invoke(engine_app, ["launch", "vllm", "-m", "m", "--tpp", "2",
                                           "--dry-run"]).exit_code == 2


def test_parallel_sizes_are_checked_against_the_gpus() -> None:
    """--tp 16 on one node of 8 GPUs says what to do; two nodes make it fit."""
    with pytest.raises(ValueError, match=r"needs 16 GPUs; this launch has 8 .* --nnodes 2"):
        LaunchSpec(engine="sglang", model="m", tp=16, gpus_per_node=8)
    with pytest.raises(ValueError, match="lower --dp"):
        LaunchSpec(engine="vllm", model="m", tp=8, dp=2, gpus_per_node=8)
    with pytest.raises(ValueError, match="--dist-init-addr"):
        LaunchSpec(engine="sglang", model="m", tp=16, nnodes=2, gpus_per_node=8)
    with pytest.raises(ValueError, match=r"--node-rank 2 is outside 0\.\.1"):
        LaunchSpec(engine="sglang", model="m", nnodes=2, node_rank=2, dist_init_addr="h:1")
    unknown = LaunchSpec(engine="vllm", model="m", tp=16)  # no GPU count: warned, not refused
    assert any("not checked" in w for w in warnings_for(unknown))


def test_deepseek_v3_on_two_nodes_of_eight() -> None:
    """The documented example: DeepSeek-V3 on 2 x 8 H800."""
    sg = LaunchSpec(engine="sglang", model="deepseek-ai/DeepSeek-V3", tp=16, nnodes=2,
                    node_rank=1, dist_init_addr="10.0.0.1:5000", gpus_per_node=8)
    f = _flags(build_command(sg))
    assert (f["--tp-size"], f["--nnodes"], f["--node-rank"], f["--dist-init-addr"]) == \
        ("16", "2", "1", "10.0.0.1:5000")
    assert any("served by node 0" in w for w in warnings_for(sg))
    vl = LaunchSpec(engine="vllm", model="deepseek-ai/DeepSeek-V3", tp=8, pp=2, nnodes=2,
                    gpus_per_node=8)
    f = _flags(build_command(vl))
    assert (f["--tensor-parallel-size"], f["--pipeline-parallel-size"],
            f["--distributed-executor-backend"]) == ("8", "2", "ray")
    assert any("Ray cluster" in w for w in warnings_for(vl))
    assert vl.gpus == 16
    result = CliRunner().invoke(engine_app, [
        "launch", "sglang", "-m", "deepseek-ai/DeepSeek-V3", "--tp", "16", "--gpus-per-node", "8",
        "--dry-run"])
    assert result.exit_code == 2 and "--nnodes 2" in result.output
