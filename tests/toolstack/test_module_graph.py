"""The toolstack's modules, as toolstack/README.md draws them: no import cycle, the services below the facade
never import it (they take the context), and no module over 500 lines.

Every import counts, those under ``TYPE_CHECKING`` and inside functions too: a cycle hidden from the
interpreter is still a cycle for the reader. The CLI's modules are left out (they register their commands
on the group by importing one another).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "toolstack"
MAX_LINES = 500
# The services the facade (toolstack.ops) composes, and what they are built on: they take a Context.
BELOW_THE_FACADE = {
    "toolstack.boot",
    "toolstack.claim_store",
    "toolstack.claims",
    "toolstack.context",
    "toolstack.devices",
    "toolstack.errors",
    "toolstack.history",
    "toolstack.inventory",
    "toolstack.layout",
    "toolstack.lifecycle",
    "toolstack.models",
    "toolstack.ownership",
    "toolstack.pending",
    "toolstack.plan",
    "toolstack.pool",
    "toolstack.reconcile",
    "toolstack.task_records",
    "toolstack.tasks",
    "toolstack.vmsource",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_cli(module: str) -> bool:
    return any(part == "cli" or part.startswith("cli_") for part in module.split("."))


def module_graph() -> dict[str, set[str]]:
    """{toolstack module: the toolstack modules it imports}, the CLI's left out."""
    modules = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if _is_cli(name):
            continue
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        graph[name] = {m for m in imported if m in modules and m != name and not _is_cli(m)}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_toolstack_modules_import_each_other_in_a_cycle():
    assert cycles(module_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_services_below_the_facade_never_import_it():
    graph = module_graph()
    assert set(graph) >= BELOW_THE_FACADE
    assert {module for module in BELOW_THE_FACADE if "toolstack.ops" in graph[module]} == set()


def test_no_toolstack_module_is_over_500_lines():
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {path: n for path, n in lengths.items() if n > MAX_LINES} == {}
