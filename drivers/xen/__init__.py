"""Xen's ``xl`` toolstack (``xl://``): xl.cfg files, ``xl list -l`` parsing, an injected command runner."""

from drivers.xen.driver import XlDriver
from drivers.xen.runner import CommandRunner, CompletedCommand, SubprocessRunner

__all__ = ["CommandRunner", "CompletedCommand", "SubprocessRunner", "XlDriver"]
