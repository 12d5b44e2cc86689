"""`manxue ledger replay DIR`: move a journal's rows into the ledger, from any machine.

A replica killed mid-flight leaves its journal (`DATA_DIR/journal/segment-*.jsonl`) behind; it
replays it itself at its next start, but a replica that never comes back (a pod rescheduled
elsewhere, a machine gone) needs someone to do it: copy the directory anywhere that reaches
the database and run this. Rows are inserted by request id, so replaying twice, or a journal
whose rows were already flushed, counts nothing twice. Segments a live process still holds
(locked) are left alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from manxue.accounting.journal import Journal
from manxue.accounting.ledger import LEDGER_COLUMNS, insert_rows
from manxue.errors import ConfigError
from manxue.settings import load_settings
from manxue.store.db import open_engine

ledger_app = typer.Typer(
    help="The usage ledger's journal.\n\nExample: manxue ledger replay /mnt/dead-replica/journal "
         "--config prod.toml", no_args_is_help=True)
out = Console()
err = Console(stderr=True)


@ledger_app.command("replay")
def replay(
    directory: Annotated[Path, typer.Argument(
        metavar="DIR", help="A journal directory (a replica's DATA_DIR/journal, or its DATA_DIR).",
        exists=True, file_okay=False, show_default=False)],
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar="MANXUE_CONFIG",
        help="Config file naming the database (database_url); default: the local one.")] = None,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the segments in place after replaying them.")] = False,
) -> None:
    """Insert the journal's rows into the ledger, each once, and delete the replayed segments.

    Example: manxue ledger replay /mnt/dead-replica/journal --config prod.toml
    """
    if not any(directory.glob("segment-*")) and (directory / "journal").is_dir():
        directory = directory / "journal"     # given the replica's DATA_DIR
    try:
        engine = open_engine(load_settings(config).resolved_database_url())
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    segments = rows = new = 0
    for path, found in Journal(directory, LEDGER_COLUMNS).orphans():
        segments += 1
        rows += len(found)
        new += insert_rows(engine, found)
        if not keep:
            path.unlink(missing_ok=True)
    out.print(f"replayed {segments} segment(s): {rows} row(s), {new} new in the ledger, "
              f"{rows - new} already there")
