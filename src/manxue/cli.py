"""The `manxue` command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from manxue import __version__
from manxue.errors import ConfigError
from manxue.settings import Settings, load_settings

app = typer.Typer(
    name="manxue",
    help="Serve, route, meter and verify DeepSeek-class models behind one OpenAI-compatible API.",
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
    """manxue (满血, "full strength"): one metered, fail-safe API over local engines and clouds."""


def _load(config: Path | None, **overrides: object) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    server = settings.server.model_copy(
        update={k: v for k, v in overrides.items() if v is not None})
    return settings.model_copy(update={"server": server})


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind [default: 8765].")] = None,
    workers: Annotated[int | None, typer.Option(
        help="Worker processes sharing the port [default: 1].", min=1)] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Refuse every deployment that is not local.")] = False,
) -> None:
    """Start the API server (OpenAI/DeepSeek-compatible, under /v1)."""
    from manxue.server.run import serve as run_server

    settings = _load(config, host=host, port=port, workers=workers, offline=offline or None)
    try:
        settings.check_offline()
        run_server(settings)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _mount_subcommands() -> None:
    from manxue.accounting.cli import invoice, keys_app, usage
    from manxue.engine_launch.cli import engine_app

    app.add_typer(keys_app, name="keys")
    app.command("usage")(usage)
    app.command("invoice")(invoice)
    app.add_typer(engine_app, name="engine")


_mount_subcommands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
