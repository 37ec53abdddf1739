"""What a test records with ``record_property(FIGURES, ...)`` is printed at the end of the run, passing or
not (``tests/figures.py``): how ``make e2e`` shows the accelerator that ran and the boot-time table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TESTS = """
from tests.figures import FIGURES

def test_reports_a_table(record_property):
    record_property(FIGURES, "accelerator  first console line\\ntcg          4.20 s")

def test_reports_nothing(record_property):
    record_property("other", "not a figure")
"""


def run_pytest(directory: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=directory,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_figures_of_passing_tests_are_printed_in_a_summary_section(tmp_path: Path):
    (tmp_path / "conftest.py").write_text("from tests.figures import pytest_configure  # noqa: F401\n")
    (tmp_path / "test_x.py").write_text(TESTS)
    out = run_pytest(tmp_path)
    section = out[out.index(" figures ") :]
    assert "test_x.py::test_reports_a_table\n" in section
    assert "    accelerator  first console line\n    tcg          4.20 s\n" in section
    assert "test_reports_nothing" not in section and "not a figure" not in out


def test_a_run_without_figures_has_no_figures_section(tmp_path: Path):
    (tmp_path / "conftest.py").write_text("from tests.figures import pytest_configure  # noqa: F401\n")
    (tmp_path / "test_x.py").write_text(TESTS)
    assert " figures " not in run_pytest(tmp_path, "-k", "nothing")
