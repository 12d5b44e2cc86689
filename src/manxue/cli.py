"""The `manxue` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from manxue import __version__
from manxue.cli_style import flags_take_no_value
from manxue.errors import ConfigError
from manxue.settings import DeploymentSettings, Settings, load_settings

flags_take_no_value()

app = typer.Typer(
    name="manxue",
    help="Serve, route, meter and verify DeepSeek-class models behind one OpenAI-compatible API."
         "\n\nExample: manxue serve --config manxue.toml --port 8765",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
err = Console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (see docs/config.example.toml).",
                 envvar="MANXUE_CONFIG"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"manxue {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """manxue (满血, "full strength"): one metered, fail-safe API over local engines and clouds.

    Example: manxue serve --config manxue.toml --port 8765
    """


def _load(config: Path | None, **overrides: object) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    server = settings.server.model_copy(
        update={k: v for k, v in overrides.items() if v is not None})
    return settings.model_copy(update={"server": server})


NONE = "—"
"""What a table prints for a value that is not there (never "None")."""

DEFAULT_LOCAL = {"name": "smollm2", "model": "smollm2", "kind": "local"}


def _with_models(settings: Settings, model: Path | None, name: str | None,
                 chat_template: str | None, use_default: bool) -> Settings:
    """Add `--model PATH` as a local deployment; with no deployments at all, the shipped model."""
    deployments = list(settings.deployments)
    entry: dict[str, object] | None = None
    if model is not None:
        stem = name or model.stem.split(".")[0].lower()
        entry = {"name": stem, "model": stem, "kind": "local", "path": str(model)}
    elif use_default and not deployments:
        entry = dict(DEFAULT_LOCAL)
        if name:
            entry["name"] = entry["model"] = name
    if entry is not None:
        if chat_template:
            entry["options"] = {"chat_template": chat_template}
        deployments.append(DeploymentSettings.model_validate(entry))
    return settings.model_copy(update={"deployments": deployments})


ModelOpt = Annotated[Path | None, typer.Option(
    "--model", "-m", help="Serve this GGUF file in-process (a local deployment).",
    exists=True, dir_okay=False)]
NameOpt = Annotated[str | None, typer.Option(help="Public model name for --model. \\[default: file name]")]
TemplateOpt = Annotated[str | None, typer.Option(
    "--chat-template", help="Chat template for --model: a name, a Jinja file, or 'gguf'.")]


@app.command()
def serve(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    name: NameOpt = None,
    chat_template: TemplateOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind. \\[default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(
        help="Port to bind, 1 to 65535. \\[default: 8765]", min=1, max=65535)] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes sharing the port. \\[default: 1]", min=1)] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Refuse every deployment that is not local.")] = False,
    insecure_open: Annotated[bool, typer.Option(
        "--insecure-open", help="Serve a non-loopback --host with billing off, so without any "
        "API key: anyone who reaches the port can use every model.")] = False,
) -> None:
    """Start the API server (OpenAI/DeepSeek-compatible, under /v1).

    With no config and no --model it serves SmolLM2-135M-Instruct as model `smollm2`.

    With billing off (no API keys at all) it binds only loopback addresses, unless --insecure-open.

    Example: manxue serve --config manxue.toml --port 8080 --workers 2
    """
    from manxue.server.run import CannotListen
    from manxue.server.run import serve as run_server

    settings = _load(config, host=host, port=port, workers=workers, offline=offline or None,
                     insecure_open=insecure_open or None)
    settings = _with_models(settings, model, name, chat_template, use_default=config is None)
    try:
        settings.check_offline()
        status = run_server(settings)
    except ConfigError as exc:
        _fail(exc, 2)
    except CannotListen as exc:
        _fail(exc, 1)
    if status:
        raise typer.Exit(status)


def _fail(exc: Exception, status: int) -> NoReturn:
    """Print `exc` as one error line (not wrapped, not read as markup) and exit."""
    err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(status) from None


@app.command("models")
def models(
    config: ConfigOpt = None,
    model: ModelOpt = None,
    name: NameOpt = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the models served: deployments, context length, quantization, size, tokenizer.

    Example: manxue models --config manxue.toml --json
    """
    import asyncio

    import orjson
    from rich.table import Table

    from manxue.providers import registry

    settings = _with_models(_load(config), model, name, None, use_default=config is None)
    rows = []
    try:
        for d in settings.deployments:
            provider = registry.create(d)
            try:
                info = provider.describe()
            finally:
                asyncio.run(provider.close())
            rows.append({"model": d.model, "deployment": d.name, "priority": d.priority, **info})
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table("model", "deployment", "kind", "context", "quantization", "size", "tokenizer",
                  "source")
    for r in rows:
        size = r.get("size_bytes")
        table.add_row(r["model"], r["deployment"], str(r.get("kind") or NONE),
                      str(r.get("context_length") or NONE), str(r.get("quantization") or NONE),
                      f"{size / 1e6:.0f} MB" if size else NONE, str(r.get("tokenizer") or NONE),
                      str(r.get("path") or r.get("upstream_model") or NONE))
    Console().print(table)


def _mount_subcommands() -> None:
    from manxue.accounting.cli import invoice, keys_app, tenants_app, usage
    from manxue.accounting.db_cli import db_app
    from manxue.accounting.ledger_cli import ledger_app
    from manxue.engine_launch.cli import engine_app
    from manxue.plan.cli import plan_app
    from manxue.pricing.cli import prices
    from manxue.verify.cli import verify

    app.add_typer(keys_app, name="keys")
    app.add_typer(tenants_app, name="tenants")
    app.command("usage")(usage)
    app.command("invoice")(invoice)
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(db_app, name="db")
    app.command("prices")(prices)
    app.add_typer(engine_app, name="engine")
    app.add_typer(plan_app, name="plan")
    app.command("verify")(verify)


_mount_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
