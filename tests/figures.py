"""Figures a test reports, shown in pytest's terminal summary even when the test passes.

pytest captures what a passing test prints, so ``make e2e`` would hide what issue 19 asks it to show (the
accelerator that ran, the KVM/TCG boot-time table). A test records a figure with pytest's own
``record_property(FIGURES, text)`` (it also lands in a JUnit XML report); this plugin gathers them from
every test's call phase and prints them in a ``figures`` section at the end of the run. ``tests/conftest.py``
imports :func:`pytest_configure`, which registers it.
"""

from __future__ import annotations

import pytest

FIGURES = "figures"  # the record_property name this plugin gathers


class Figures:
    """The plugin: figures by test, in the order the tests ran."""

    def __init__(self) -> None:
        self.gathered: list[tuple[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.gathered.extend(
                (report.nodeid, str(value)) for name, value in report.user_properties if name == FIGURES
            )

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.gathered:
            return
        terminalreporter.section(FIGURES)
        for nodeid, text in self.gathered:
            terminalreporter.write_line(nodeid)
            for line in text.strip("\n").splitlines():
                terminalreporter.write_line(f"    {line}")


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(Figures(), "tests-figures")
