"""URI scheme → driver factory; ``drivers.open`` and ``drivers.register`` are its public face."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from drivers.base import Driver
from drivers.errors import UnknownDriverURI

DriverFactory = Callable[[str], Driver]

_lock = threading.Lock()
_factories: dict[str, DriverFactory] = {}


def register(scheme: str, factory: DriverFactory) -> None:
    """Make ``open`` build drivers for URIs of ``scheme`` with ``factory(uri)``; replaces an earlier one.

    A scheme ``"qemu"`` also serves transport variants such as ``qemu+ssh`` unless those are registered too.
    """
    if not scheme or not scheme.replace("+", "").replace("-", "").isalnum():
        raise ValueError(f"invalid URI scheme {scheme!r}")
    with _lock:
        _factories[scheme.lower()] = factory


def schemes() -> list[str]:
    """Registered schemes, sorted."""
    return sorted(_factories)


def open_uri(uri: str) -> Driver:
    """Open a driver for ``uri``; UnknownDriverURI (naming the URI) if no driver serves its scheme."""
    if not isinstance(uri, str) or "://" not in uri:
        raise UnknownDriverURI(f"{uri!r} is not a driver URI; expected e.g. sim://, test:///default, xl://")
    scheme = urlsplit(uri).scheme.lower()
    factory = _factories.get(scheme) or _factories.get(scheme.partition("+")[0])
    if factory is None:
        raise UnknownDriverURI(f"no driver for URI {uri!r}; known schemes: {', '.join(schemes())}")
    return factory(uri)


def _sim(uri: str) -> Driver:
    from drivers.sim import SimDriver

    return SimDriver.from_uri(uri)


def _libvirt(uri: str) -> Driver:
    # Imported on use: the simulator and xl must work where libvirt-python is not installed.
    from drivers.libvirt import LibvirtDriver

    return LibvirtDriver(uri)


def _xl(uri: str) -> Driver:
    from drivers.xen import XlDriver

    return XlDriver.from_uri(uri)


register("sim", _sim)
for _scheme in ("test", "qemu", "xen", "lxc"):
    register(_scheme, _libvirt)
register("xl", _xl)
