"""drivers.open(uri) and drivers.register(scheme, factory)."""

from __future__ import annotations

from pathlib import Path

import pytest

import drivers
from drivers import UnknownDriverURI, registry
from drivers.libvirt import LibvirtDriver
from drivers.sim import SimDriver
from drivers.xen import XlDriver


def test_each_uri_opens_its_driver(tmp_path: Path):
    with drivers.open("sim://") as memory:
        assert isinstance(memory, SimDriver) and memory.state_dir is None
    with drivers.open(f"sim://{tmp_path}/host") as on_disk:
        assert on_disk.state_dir == tmp_path / "host" and (tmp_path / "host" / "domains").is_dir()
    with drivers.open("test:///default") as libvirt_test:
        assert isinstance(libvirt_test, LibvirtDriver) and libvirt_test.domain_type == "test"
    with drivers.open(f"xl://{tmp_path}/xen") as xl:
        assert isinstance(xl, XlDriver) and xl.config_dir == tmp_path / "xen"


@pytest.mark.parametrize("uri", ["vmware://host", "nonsense", "", "sim"])
def test_an_unknown_uri_is_refused_naming_it(uri: str):
    with pytest.raises(UnknownDriverURI) as caught:
        drivers.open(uri)
    assert repr(uri) in str(caught.value)
    assert isinstance(caught.value, drivers.HypervisorUnavailable)


def test_register_adds_a_scheme_and_transport_variants_reach_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(registry, "_factories", dict(registry._factories))  # forget "fake" afterwards
    opened: list[str] = []

    def factory(uri: str) -> drivers.Driver:
        opened.append(uri)
        return drivers.open("sim://")

    drivers.register("fake", factory)
    with drivers.open("fake:///x"), drivers.open("fake+ssh://host/x"):
        pass
    assert opened == ["fake:///x", "fake+ssh://host/x"]
    with pytest.raises(ValueError, match="invalid URI scheme"):
        drivers.register("bad scheme", factory)
