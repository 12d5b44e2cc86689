"""`manxue engine launch vllm|sglang ...`: run a distributed engine and serve it through the gateway."""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status

from manxue.cli_style import flags_take_no_value
from manxue.engine_launch.commands import (
    LaunchSpec,
    build_command,
    engine_url,
    shell_join,
    warnings_for,
)
from manxue.engine_launch.register import (
    ADMIN_KEY_ENV,
    GatewayClient,
    Registrar,
    RegistrationError,
    deployment_payload,
)
from manxue.engine_launch.supervisor import EngineFailed, Reporter, Supervisor, SupervisorConfig

flags_take_no_value()

engine_app = typer.Typer(
    help="Launch distributed inference engines (vLLM, SGLang) and serve them through manxue.\n\n"
         "Example: manxue engine launch vllm -m Qwen/Qwen2.5-7B-Instruct --tp 2 --dry-run",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


class Engine(StrEnum):
    vllm = "vllm"
    sglang = "sglang"


@engine_app.callback()
def _engine_root() -> None:
    """Launch distributed inference engines (vLLM, SGLang) and serve them through manxue.

    Example: manxue engine launch vllm -m Qwen/Qwen2.5-7B-Instruct --tp 2 --dry-run
    """


@engine_app.command(
    context_settings={"allow_extra_args": True},
    epilog="Arguments after `--` go to the engine unchanged, e.g. "
           "`-- --trust-remote-code --kv-cache-dtype fp8`.",
)
def launch(
    ctx: typer.Context,
    engine: Annotated[Engine, typer.Argument(metavar="ENGINE", help="Which engine: vllm or sglang.",
                                             case_sensitive=False, show_default=False)],
    model: Annotated[str, typer.Option("--model", "-m", show_default=False,
                                       help="Model: a local path or a Hugging Face id.")],
    tp: Annotated[int, typer.Option("--tp", min=1, help="Tensor-parallel size (GPUs per replica).")] = 1,
    dp: Annotated[int, typer.Option("--dp", min=1, help="Data-parallel size (replicas).")] = 1,
    pp: Annotated[int, typer.Option("--pp", min=1, help="Pipeline-parallel size (stages).")] = 1,
    nnodes: Annotated[int, typer.Option(
        "--nnodes", min=1, help="Nodes the engine spans (run the command on each).")] = 1,
    node_rank: Annotated[int, typer.Option(
        "--node-rank", min=0, help="This node's rank, 0 to nnodes-1 (0 serves the API).")] = 0,
    dist_init_addr: Annotated[str | None, typer.Option(
        "--dist-init-addr", help="Node 0's HOST:PORT for SGLang across nodes.")] = None,
    gpus_per_node: Annotated[int | None, typer.Option(
        "--gpus-per-node", min=1, show_default=False,
        help="GPUs on each node, to check the parallel sizes. \\[default: counted with "
             "nvidia-smi]")] = None,
    ep: Annotated[bool, typer.Option("--ep", help="Expert parallelism for MoE models.")] = False,
    port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Engine port. \\[default: 8000 for vllm, 30000 for sglang]",
        show_default=False)] = None,
    host: Annotated[str, typer.Option(help="Address the engine binds.")] = "127.0.0.1",
    max_model_len: Annotated[int | None, typer.Option(
        min=1, help="Longest context in tokens (sglang: --context-length). \\[default: the "
        "model's]")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        min=0.01, max=1.0, help="Share of GPU memory the engine may take (sglang: "
        "--mem-fraction-static). \\[default: the engine's]")] = None,
    quantization: Annotated[str | None, typer.Option(
        help="Weight quantization, e.g. fp8, awq, gptq. \\[default: the engine's choice]")] = None,
    served_name: Annotated[str | None, typer.Option(
        help="Model name clients ask for. \\[default: the --model value]")] = None,
    gateway: Annotated[str | None, typer.Option(
        envvar="MANXUE_GATEWAY", help="Running manxue gateway to register in, e.g. "
        "http://127.0.0.1:8765.")] = None,
    admin_key: Annotated[str | None, typer.Option(
        envvar=ADMIN_KEY_ENV, show_envvar=True, show_default=False,
        help="The gateway's admin key.")] = None,
    name: Annotated[str | None, typer.Option(
        help="Deployment name in the gateway. \\[default: ENGINE-HOST-PORT]")] = None,
    priority: Annotated[int, typer.Option(
        help="Deployment priority (lower is tried first).")] = 0,
    advertise_url: Annotated[str | None, typer.Option(
        help="Engine URL the gateway should use. \\[default: http://HOST:PORT/v1]")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the command and the deployment, start nothing.")] = False,
    log_file: Annotated[Path | None, typer.Option(
        help="Engine output. \\[default: ./manxue-NAME.log]")] = None,
    startup_timeout: Annotated[float, typer.Option(
        min=1, help="Seconds to wait for the engine to become healthy.")] = 1800,
    max_restarts: Annotated[int, typer.Option(
        min=0, help="Restarts in a row before giving up.")] = 5,
    backoff: Annotated[float, typer.Option(
        min=0, help="First restart delay in seconds; doubles each time.")] = 2.0,
    backoff_max: Annotated[float, typer.Option(min=0, help="Longest restart delay.")] = 60.0,
    grace: Annotated[float, typer.Option(
        min=0, help="Seconds between SIGTERM and SIGKILL at shutdown.")] = 30.0,
    poll_interval: Annotated[float, typer.Option(
        min=0.05, help="Seconds between health checks while starting.")] = 1.0,
    register_interval: Annotated[float, typer.Option(
        min=0.1, help="Seconds between checks that the gateway still lists the deployment "
        "(it is registered again if not).")] = 30.0,
    python: Annotated[str, typer.Option(
        envvar="MANXUE_ENGINE_PYTHON", show_default=False,
        help="Python interpreter that has the engine installed. \\[default: this interpreter]")]
        = sys.executable,
    engine_exec: Annotated[str | None, typer.Option(
        envvar="MANXUE_ENGINE_EXEC",
        help="Command replacing `PYTHON -m ENTRYPOINT` (shell-split), e.g. a wrapper script.")] = None,
) -> None:
    """Start vLLM or SGLang as a supervised OpenAI server, and register it in a gateway.

    The engine is health-checked (GET /health, then /v1/models), restarted with exponential
    backoff when it dies, and stopped cleanly (SIGTERM, then SIGKILL) on Ctrl-C or SIGTERM,
    when it is also removed from the gateway.

    Set the gateway's admin key in MANXUE_ADMIN_KEY (or pass --admin-key) to register it.

    Example: manxue engine launch sglang -m deepseek-ai/DeepSeek-V3 --tp 8 --gateway http://127.0.0.1:8765

    Across two nodes of 8 GPUs (run on each, --node-rank 0 and 1): manxue engine launch sglang
    -m deepseek-ai/DeepSeek-V3 --tp 16 --nnodes 2 --node-rank 0 --dist-init-addr 10.0.0.1:5000
    """
    err = Console(stderr=True)
    try:
        spec = LaunchSpec(
            engine=engine.value, model=model, host=host, port=port, tp=tp, dp=dp, pp=pp, ep=ep,
            nnodes=nnodes, node_rank=node_rank, dist_init_addr=dist_init_addr,
            gpus_per_node=gpus_per_node if gpus_per_node is not None else count_gpus(),
            max_model_len=max_model_len, gpu_memory_utilization=gpu_memory_utilization,
            quantization=quantization, served_name=served_name, extra_args=tuple(ctx.args),
            python=python, engine_exec=tuple(shlex.split(engine_exec)) if engine_exec else ())
    except ValueError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    command = build_command(spec)
    payload = deployment_payload(spec, name=name, base_url=advertise_url, priority=priority)
    for w in warnings_for(spec):
        err.print(f"[yellow]warning:[/yellow] {escape(w)}")

    if dry_run:
        _print_plan(spec, command, payload, gateway)
        return
    if gateway and not admin_key:
        err.print(f"[red]error:[/red] --gateway needs the gateway's admin key: pass --admin-key "
                  f"or set {ADMIN_KEY_ENV}")
        raise typer.Exit(2)

    cfg = SupervisorConfig(
        command=command, url=engine_url(spec),
        log_file=log_file or Path(f"manxue-{payload['name']}.log"),
        startup_timeout=startup_timeout, max_restarts=max_restarts, backoff_base=backoff,
        backoff_max=backoff_max, grace=grace, poll_interval=poll_interval)
    client = GatewayClient(gateway, admin_key or "") if gateway else None
    err.print(f"[bold]{spec.engine}[/bold] {escape(spec.model)} on {spec.gpus} GPU(s) "
              f"(tp {spec.tp} × pp {spec.pp} × dp {spec.dp}{', ep' if spec.ep else ''}"
              f"{f', node {spec.node_rank} of {spec.nnodes}' if spec.nnodes > 1 else ''}) "
              f"at {engine_url(spec)}")
    code = asyncio.run(_supervise(cfg, client, payload, err, register_interval))
    raise typer.Exit(code)


def count_gpus() -> int | None:
    """GPUs on this machine as nvidia-smi lists them; None when it cannot say."""
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--list-gpus"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    count = sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return count or None


def _print_plan(spec: LaunchSpec, command: list[str], payload: dict[str, object],
                gateway: str | None) -> None:
    url = engine_url(spec)
    typer.echo("command:")
    typer.echo("  " + shell_join(command))
    typer.echo(f"health check: GET {url}/health, then GET {url}/v1/models")
    if gateway:
        typer.echo(f"would register: POST {gateway.rstrip('/')}/admin/deployments?replace=true")
    else:
        typer.echo("would register: nothing (no --gateway); the deployment would be:")
    typer.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2).decode())


class _RichReporter(Reporter):
    def __init__(self, console: Console) -> None:
        self.console = console
        self._status: Status | None = None

    def waiting(self, text: str) -> None:
        msg = f"starting the engine: {escape(text)}"
        if self._status is None:
            self._status = self.console.status(msg)
            self._status.start()
        else:
            self._status.update(msg)

    def done_waiting(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def info(self, text: str) -> None:
        self.console.print(escape(text))

    def warning(self, text: str) -> None:
        self.console.print(f"[yellow]{escape(text)}[/yellow]")


async def _supervise(cfg: SupervisorConfig, client: GatewayClient | None,
                     payload: dict[str, object], console: Console,
                     register_interval: float = 30.0) -> int:
    sup: Supervisor
    registrar = None
    if client is not None:
        registrar = Registrar(client, dict(payload), interval=register_interval,
                              on_fatal=lambda exc: sup.request_stop(),
                              say=lambda text: console.print(escape(text)))

    async def on_ready() -> None:
        if registrar is None:
            console.print(f"serving model {payload['model']!r} at {payload['base_url']} "
                          "(no --gateway: not registered)")
            return
        await registrar.up()

    async def on_down() -> None:
        if registrar is not None:
            await registrar.down()

    sup = Supervisor(cfg, on_ready=on_ready, on_down=on_down, reporter=_RichReporter(console))
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if sup.stopping:
            console.print("[yellow]killing the engine now[/yellow]")
            sup.kill_now()
        else:
            console.print(f"shutting down (a second Ctrl-C kills the engine at once; "
                          f"otherwise SIGKILL after {cfg.grace:g} s)")
            sup.request_stop()

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        await sup.run()
    except (EngineFailed, RegistrationError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 1
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if client is not None:
            await client.close()
    if registrar is not None and registrar.error is not None:
        console.print(f"[red]error:[/red] {escape(str(registrar.error))}")
        return 1
    console.print("engine stopped")
    return 0


def main() -> None:
    engine_app()


if __name__ == "__main__":
    main()
