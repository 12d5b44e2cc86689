"""`manxue db migrate`: bring the database of a config to the current schema, and say so.

Every gateway migrates at its start too (one at a time on PostgreSQL); this is the command a
deployment runs once before the replicas (a Kubernetes Job, a compose one-shot service).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from manxue.errors import ConfigError
from manxue.settings import load_settings
from manxue.store.db import open_engine, revision, upgrade

db_app = typer.Typer(
    help="The database (SQLite or PostgreSQL) behind keys, tenants and the ledger.\n\n"
         "Example: manxue db migrate --config prod.toml", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@db_app.command("migrate")
def migrate(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar="MANXUE_CONFIG",
        help="Config file naming the database (database_url). \\[default: the local one]",
        show_default=False)] = None,
) -> None:
    """Apply every migration not yet applied (numbered, add-only) and print the revision.

    Example: manxue db migrate --config prod.toml
    """
    try:
        settings = load_settings(config)
        url = settings.resolved_database_url()
        engine = open_engine(url, migrate=False)
        try:
            before = revision(engine)
            upgrade(engine)
            after = revision(engine)
        finally:
            engine.dispose()
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except Exception as exc:  # an unreachable or refusing database: say which, exit non-zero
        err.print(f"[red]error:[/red] cannot migrate the database: {exc.__class__.__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}")
        raise typer.Exit(1) from None
    where = url.split("@")[-1] if "@" in url else url
    if before == after:
        out.print(f"{where}: schema current (revision {after})")
    else:
        out.print(f"{where}: migrated from revision {before or 'none'} to {after}")
