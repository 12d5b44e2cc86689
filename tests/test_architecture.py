"""Import arrows run one way (docs: ARCHITECTURE.md, "Arrows run one way").

Every module under src/manxue is parsed (not imported) and each `import` it contains, at module
level or inside a function, is mapped to the top-level part of the package it reaches. The
table below says which parts each part may import; `protocol`, `errors` and `timeutil` are the
shared vocabulary, importable from anywhere. Known violations are listed one file at a time, so
a new one fails here, and an exception that is no longer needed fails too, so the list only
shrinks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import manxue

SRC = Path(manxue.__file__).parent
SHARED = {"protocol", "errors", "timeutil", "cli_style"}

# part -> the parts it may import, besides itself and SHARED.
ALLOWED: dict[str, set[str]] = {
    # the shared vocabulary and the ground floor
    "errors": set(),
    "protocol": set(),
    "timeutil": set(),  # times in UTC: one name for each way of reading a naive time
    "cli_style": set(),  # how every typer app's help looks
    "settings": set(),
    "metrics": set(),
    "web": set(),  # the pages (Jinja templates) and their static files
    # the hot path: server -> gateway -> providers -> engine
    "engine": set(),
    "providers": {"engine", "settings"},
    "gateway": {"providers", "accounting", "settings", "metrics"},
    "server": {"gateway", "providers", "accounting", "pricing", "plan", "verify", "web",
               "settings", "metrics"},
    # called by server and gateway, never the reverse; SQL tables are reached through accounting
    "accounting": {"store", "pricing", "settings", "metrics"},
    "store": set(),
    "pricing": {"settings"},
    # clients of pure functions (and, for verify and plan measure, of the engine as a library;
    # plan build-vs-buy reads the ledger through accounting's reports)
    "plan": {"pricing", "engine_launch", "engine", "accounting", "settings"},
    "verify": {"engine", "accounting"},  # accounting: exact token counts (tokencount)
    "engine_launch": set(),
    # the top: entry points and the loopback harness for tests, benchmarks and demos
    "testing": {"server", "gateway", "providers", "engine", "accounting", "store", "pricing",
                "settings", "metrics"},
    "cli": {"manxue", "server", "gateway", "providers", "engine", "engine_launch", "accounting",
            "store", "pricing", "plan", "verify", "testing", "settings", "metrics"},
    "__main__": {"cli"},
    "manxue": set(),  # the package's own __init__
}

# (module file, part it imports) -> why it is still allowed, and what removes it.
EXCEPTIONS: dict[tuple[str, str], str] = {
}


def part_of(name: str) -> str | None:
    """The top-level part a dotted module name belongs to, or None outside manxue."""
    pieces = name.split(".")
    if pieces[0] != "manxue":
        return None
    if len(pieces) > 1 and ((SRC / pieces[1]).is_dir() or (SRC / f"{pieces[1]}.py").is_file()):
        return pieces[1]
    return "manxue"  # the package's __init__, or a name defined there (`from manxue import x`)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(("manxue", *parts))


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) for everything the module imports, wherever the import statement is;
    `from a import b` yields `a.b`, which may be a module or a name in `a`."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and _called(node) == "import_module" and node.args:
            target = node.args[0]  # import_module("manxue.x"): a literal name is an import too
            if isinstance(target, ast.Constant) and isinstance(target.value, str):
                yield node.lineno, target.value


def _called(call: ast.Call) -> str | None:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None


def arrows() -> Iterator[tuple[str, int, str, str]]:
    """(file, line, from part, to part) for every import that crosses parts."""
    for path in sorted(SRC.rglob("*.py")):
        src = part_of(module_name(path))
        assert src is not None
        for line, name in imported(path):
            dst = part_of(name)
            if dst is not None and dst != src:
                yield path.relative_to(SRC).as_posix(), line, src, dst


def test_every_part_has_a_row():
    parts = {part_of(module_name(p)) for p in SRC.rglob("*.py")}
    parts |= {p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert parts - set(ALLOWED) == set(), "place the new part in ALLOWED"


def test_imports_follow_the_allowed_table():
    wrong = [f"{file}:{line}: {src} imports {dst}"
             for file, line, src, dst in arrows()
             if dst not in ALLOWED[src] | SHARED and (file, dst) not in EXCEPTIONS]
    assert wrong == []


def test_every_exception_is_still_needed():
    seen = {(file, dst) for file, _, _, dst in arrows()}
    assert set(EXCEPTIONS) - seen == set(), "fixed: remove it from EXCEPTIONS"


def test_the_table_has_no_cycles():
    graph = {part: deps - {part} for part, deps in ALLOWED.items()}
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        raise AssertionError(f"ALLOWED has a cycle: {exc.args[1]}") from None


def test_request_types_import_only_the_standard_library_and_protocol():
    """protocol/types.py names what server, gateway and accounting share; like Starlette's
    types.py it stands on nothing else."""
    path = SRC / "protocol" / "types.py"
    wrong = [name for _, name in imported(path)
             if name.split(".")[0] not in sys.stdlib_module_names
             and not name.startswith("manxue.protocol.")]
    assert wrong == []


def test_timeutil_imports_only_the_standard_library_and_errors():
    """timeutil is vocabulary every part may import: it stands on nothing else."""
    path = SRC / "timeutil.py"
    wrong = [name for _, name in imported(path)
             if name.split(".")[0] not in sys.stdlib_module_names
             and not name.startswith("manxue.errors.")]
    assert wrong == []
