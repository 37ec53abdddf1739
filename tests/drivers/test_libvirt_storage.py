"""Volumes through libvirt's storage API (``drivers/libvirt/storage.py``), what ``vm create --disk
PATH,size=64M,format=qcow2`` calls: on libvirt's test driver where it has what the call needs (pools,
volumes, transient pools), and on a small fake connection for what only a real host does (looking a pool up
by its directory, refusing a lookup). ``tests/toolstack/test_guest_e2e.py`` creates one on a real libvirtd.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.errors import DomainExists, InvalidArgument
from drivers.libvirt.storage import create_volume

libvirt = pytest.importorskip("libvirt")

MIB = 1 << 20


@pytest.fixture
def conn() -> Iterator[Any]:
    """A connection to libvirt's test driver; the pools a test leaves are destroyed and undefined."""
    connection = libvirt.open("test:///default")
    before = {pool.name() for pool in connection.listAllStoragePools(0)}
    yield connection
    for pool in connection.listAllStoragePools(0):
        if pool.name() not in before:
            if pool.isActive():
                pool.destroy()
            if pool.isPersistent():
                pool.undefine()
    connection.close()


def pools(conn: Any) -> set[str]:
    return {pool.name() for pool in conn.listAllStoragePools(0)}


def volume_facts(volume: Any) -> tuple[int, str | None]:
    """A volume's capacity in bytes and its format, as libvirt reports them."""
    capacity = volume.info()[1]
    return capacity, ET.fromstring(volume.XMLDesc(0)).find("target/format").get("type")


def test_a_volume_is_created_in_the_pool_whose_directory_holds_it(conn, tmp_path: Path):
    """libvirt's test driver has no lookup by target path: the pools' XML says which one owns the
    directory, and the volume lands there, sparse, with the size and format asked."""
    name = f"p-{secrets.token_hex(3)}"
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{tmp_path}</path></target></pool>"
    )
    pool.create(0)
    create_volume(conn, str(tmp_path / "data.qcow2"), 64, "qcow2")
    volume = pool.storageVolLookupByName("data.qcow2")
    assert volume.path() == str(tmp_path / "data.qcow2")
    assert volume_facts(volume) == (64 * MIB, "qcow2")
    assert volume.info()[2] == 0, "allocated lazily"
    assert pool.isActive() and pool.isPersistent(), "the host's own pool is left as it was"


class Recorder:
    """The test driver's connection, remembering the pools created through it and the volumes made in
    them (a transient pool takes its volume records with it when it stops)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.volumes: list[tuple[int, str | None]] = []
        self._pools: list[tuple[str, bool]] = []  # (name, persistent) of each pool created

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def storagePoolCreateXML(self, xml: str, flags: int) -> Any:
        pool = self.conn.storagePoolCreateXML(xml, flags)
        self._pools.append((pool.name(), pool.isPersistent() == 1))
        recorder = self

        class Pool:
            def __getattr__(self, name: str) -> Any:
                return getattr(pool, name)

            def createXML(self, volume_xml: str, volume_flags: int) -> Any:
                volume = pool.createXML(volume_xml, volume_flags)
                recorder.volumes.append(volume_facts(volume))
                return volume

        return Pool()

    def transient_pools(self) -> list[tuple[bool, bool]]:
        """For each pool created: whether it was persistent, and whether it is still there (a transient
        pool that stopped is gone)."""
        return [(persistent, name in pools(self.conn)) for name, persistent in self._pools]


def test_without_a_pool_on_the_directory_a_transient_one_is_used_and_stopped(conn, tmp_path: Path):
    recorder = Recorder(conn)
    before = pools(conn)
    create_volume(recorder, str(tmp_path / "new.img"), 3, "raw")
    assert recorder.volumes == [(3 * MIB, "raw")]
    assert recorder.transient_pools() == [(False, False)], "transient, and stopped after the call"
    assert pools(conn) == before


def test_the_transient_pool_is_stopped_even_when_libvirt_refuses_the_volume(conn, tmp_path: Path):
    recorder = Recorder(conn)
    before = pools(conn)
    with pytest.raises(libvirt.libvirtError, match="unknown volume format type bogus"):
        create_volume(recorder, str(tmp_path / "new.img"), 3, "bogus")
    assert recorder.transient_pools() == [(False, False)]
    assert pools(conn) == before


class Untouchable:
    """A connection that fails the test if it is used at all."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"the connection was used ({name}) although nothing had to be created")


def test_an_existing_file_is_never_overwritten_and_libvirt_is_not_called(tmp_path: Path):
    image = tmp_path / "root.qcow2"
    image.write_bytes(b"keep me")
    with pytest.raises(DomainExists, match="exists already: not overwritten"):
        create_volume(Untouchable(), str(image), 64, "qcow2")
    assert image.read_bytes() == b"keep me"


def test_a_missing_directory_is_refused_before_libvirt_is_called(tmp_path: Path):
    with pytest.raises(InvalidArgument, match="is not a directory"):
        create_volume(Untouchable(), str(tmp_path / "absent" / "root.qcow2"), 64, "qcow2")


class FakePool:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def refresh(self, flags: int) -> int:
        self.calls.append(("refresh", flags))
        return 0

    def createXML(self, xml: str, flags: int) -> None:
        self.calls.append(("createXML", xml))

    def destroy(self) -> None:
        self.calls.append(("destroy", None))


class HostConnection:
    """A real host's connection, as far as create_volume uses it: a lookup by target path that finds
    ``pool`` for ``directory``, or fails with ``code`` (49: no pool there)."""

    def __init__(self, directory: Path, pool: FakePool | None = None, code: int = 49) -> None:
        self.directory, self.pool, self.code = str(directory), pool, code
        self.created_pools: list[str] = []

    def storagePoolLookupByTargetPath(self, path: str) -> FakePool:
        if path == self.directory and self.pool is not None:
            return self.pool
        error = libvirt.libvirtError("lookup failed")
        error.err = (self.code, 0, "lookup failed", 2, "", None, None, 0, 0)
        raise error

    def storagePoolCreateXML(self, xml: str, flags: int) -> FakePool:
        self.created_pools.append(xml)
        return FakePool()


def test_the_pool_found_by_its_target_path_is_refreshed_then_given_a_sparse_volume(tmp_path: Path):
    pool = FakePool()
    host = HostConnection(tmp_path, pool)
    create_volume(host, str(tmp_path / "vm.qcow2"), 64, "qcow2")
    assert pool.calls[0] == ("refresh", 0), "a file copied in by hand is known before the name is taken"
    volume = ET.fromstring(pool.calls[1][1])  # type: ignore[arg-type]
    assert volume.findtext("name") == "vm.qcow2"
    assert (volume.find("capacity").get("unit"), volume.findtext("capacity")) == ("MiB", "64")
    assert volume.findtext("allocation") == "0"
    assert volume.find("target/format").get("type") == "qcow2"
    assert host.created_pools == []


def test_a_lookup_that_fails_otherwise_than_no_pool_is_raised_and_nothing_is_created(tmp_path: Path):
    host = HostConnection(tmp_path, code=38)  # VIR_ERR_SYSTEM_ERROR
    with pytest.raises(libvirt.libvirtError):
        create_volume(host, str(tmp_path / "vm.qcow2"), 64, "qcow2")
    assert host.created_pools == []


def test_the_transient_pool_is_a_dir_pool_on_the_directory(tmp_path: Path):
    host = HostConnection(tmp_path)  # no pool there
    create_volume(host, str(tmp_path / "vm.img"), 1, "raw")
    (xml,) = host.created_pools
    pool = ET.fromstring(xml)
    assert pool is not None
    assert pool.get("type") == "dir" and pool.findtext("target/path") == str(tmp_path)
    assert pool.findtext("name").startswith("toolstack-")
