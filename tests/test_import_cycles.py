"""No module of the package imports itself back through others: every import statement counts,
also those inside functions or under TYPE_CHECKING (a lazy import hides a cycle, it does not
remove it)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import compressor_gui

PACKAGE = Path(compressor_gui.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package's modules that `path` imports (`from a.b import c`: a.b.c if a module,
    else a.b)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return (found & known) - {name}


def import_cycles() -> list[frozenset[str]]:
    """Strongly connected groups of more than one module in the package's import graph."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: imported_modules(path, set(paths)) for name, path in paths.items()}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[frozenset[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = {stack.pop()}
            while node not in group:
                group.add(stack.pop())
            if len(group) > 1:
                cycles.append(frozenset(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in graph:
        if node not in order:
            visit(node)
    return cycles


def test_no_import_cycle():
    assert [sorted(cycle) for cycle in import_cycles()] == []


def test_the_ssh_transport_knows_nothing_of_what_runs_on_it():
    """ssh_transport.py moves files and runs commands; the runner, trtexec and tegrastats
    (runner.py, jetson.py) never reach back into it."""
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    targets = PACKAGE / "targets"
    transport = imported_modules(targets / "ssh_transport.py", known)
    assert {m for m in transport if m.startswith("compressor_gui.targets")} == {
        "compressor_gui.targets.store"
    }
    for runs_there in ("runner.py", "jetson.py", "remote_runner.py"):
        imports = imported_modules(targets / runs_there, known)
        assert not {"compressor_gui.targets.ssh_transport", "compressor_gui.targets.ssh"} & imports
