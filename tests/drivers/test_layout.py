"""The drivers stay independent of each other: what two drivers share lives at the top of ``drivers/``.

(The xl driver once imported ``atomic_write`` from the simulator; it now comes from ``drivers.files``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DRIVERS = Path(__file__).resolve().parents[2] / "drivers"
DRIVER_PACKAGES = sorted(path.name for path in DRIVERS.iterdir() if (path / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    """The absolute module names ``path`` imports (``from drivers.sim.store import x`` gives
    ``drivers.sim.store``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_there_are_driver_packages_to_check():
    assert {"libvirt", "sim", "xen"} <= set(DRIVER_PACKAGES)


@pytest.mark.parametrize("package", DRIVER_PACKAGES)
def test_a_driver_imports_no_other_driver(package: str):
    others = tuple(f"drivers.{other}" for other in DRIVER_PACKAGES if other != package)
    crossing = {}
    for path in sorted((DRIVERS / package).rglob("*.py")):
        names = sorted(name for name in imported_modules(path) if _within(name, others))
        if names:
            crossing[str(path.relative_to(DRIVERS))] = names
    assert crossing == {}


def _within(name: str, packages: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``packages`` or inside one (``drivers.simulator`` is not in
    ``drivers.sim``)."""
    return any(name == package or name.startswith(f"{package}.") for package in packages)
