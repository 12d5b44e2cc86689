"""How the command line looks, shared by every typer app of the package (`manxue` and
`python -m manxue.engine_launch.cli`)."""

from __future__ import annotations

from typing import Any


def flags_take_no_value() -> None:
    """Show a flag as a flag: typer 0.2x prints every option's value type in the help, so
    `--json <bool>` and `--help <bool>`, though a flag takes no value. Older typers never call
    `display_type_rich` for a flag's type; there this changes nothing."""
    from typer import core

    option = getattr(core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if option is None or shown is None or getattr(shown, "manxue_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Any:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return shown(self, ctx)

    display_type_rich.manxue_flags = True  # type: ignore[attr-defined]  # patched once
    setattr(option, "display_type_rich", display_type_rich)  # noqa: B010  # mypy: no method-assign
