"""The layers, as the README's table draws them: each package imports only the layers below it.

- ``store/`` knows nothing of VMs: it imports no other package of the project;
- ``drivers/`` knows nothing of the store;
- ``xenstored/`` is built on the store alone;
- ``toolstack/`` composes the store and the drivers, and serves xenstored from its CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"store", "drivers", "toolstack", "xenstored"}
ALLOWED = {
    "store": set(),
    "drivers": set(),
    "xenstored": {"store"},
    "toolstack": {"store", "drivers", "xenstored"},
}


def imported_packages(package: str) -> dict[str, set[str]]:
    """{module file: the project's packages it imports} for every module of ``package``."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = (names & PACKAGES) - {package}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package):
    crossing = {
        module: sorted(names - ALLOWED[package])
        for module, names in imported_packages(package).items()
        if names - ALLOWED[package]
    }
    assert crossing == {}
