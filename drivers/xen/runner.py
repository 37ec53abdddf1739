"""How the xl driver runs commands: an injected callable, so tests replay recorded ``xl`` output."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.errors import HypervisorUnavailable


@dataclass(frozen=True, slots=True)
class CompletedCommand:
    """The outcome of one command.

    Attributes:
        argv: The command line that ran.
        returncode: Exit status (0 is success).
        stdout: Standard output, decoded as UTF-8.
        stderr: Standard error, decoded as UTF-8.
    """

    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        """Whether the command exited with status 0."""
        return self.returncode == 0


class CommandRunner(Protocol):
    """Runs ``argv`` (with optional stdin) and reports its outcome; never raises on a non-zero exit."""

    def __call__(self, argv: Sequence[str], input: bytes | None = None) -> CompletedCommand: ...


class SubprocessRunner:
    """The real runner: ``subprocess.run`` with a timeout.

    Args:
        timeout: Seconds before a command is killed and reported as HypervisorUnavailable.
    """

    def __init__(self, timeout: float = 120.0) -> None:
        self.timeout = timeout

    def __call__(self, argv: Sequence[str], input: bytes | None = None) -> CompletedCommand:
        try:
            process = subprocess.run(
                list(argv), input=input, capture_output=True, timeout=self.timeout, check=False
            )
        except FileNotFoundError:
            raise HypervisorUnavailable(f"{argv[0]!r} is not installed (Debian package xen-utils)") from None
        except subprocess.TimeoutExpired:
            raise HypervisorUnavailable(f"{' '.join(argv)} did not finish within {self.timeout} s") from None
        return CompletedCommand(
            argv=tuple(argv),
            returncode=process.returncode,
            stdout=process.stdout.decode("utf-8", "replace"),
            stderr=process.stderr.decode("utf-8", "replace"),
        )
