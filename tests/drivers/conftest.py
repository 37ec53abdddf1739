"""Shared fixtures: the drivers under contract, and unique, cleaned-up specs for them.

``test:///default`` shares one hypervisor among all connections of this process and resets when the last one
closes, so every spec gets a unique name and uuid, and everything a test defines is destroyed and undefined
afterwards. The ``qemu:///system`` parameter runs only with ``-m e2e`` (``make e2e``), after
``scripts/e2e-setup.sh`` has started libvirtd and built a bootable guest.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import drivers
from drivers import Boot, Disk, DomainEvent, DomainSpec, Driver, EventKind, Nic

E2E_DIR = Path(os.environ.get("GT_E2E_DIR", Path.home() / ".cache" / "git-toolstack" / "e2e"))
E2E_BRIDGE = os.environ.get("GT_E2E_BRIDGE", "gtbr0")
# The driver's own choice: KVM where it is hardware-assisted, TCG elsewhere (on the machines this runs on,
# /dev/kvm is PVM's, which crawls through an ordinary kernel: drivers/libvirt/accel.py). GT_E2E_URI can force
# one, e.g. qemu:///system?accel=tcg.
E2E_URI = os.environ.get("GT_E2E_URI", "qemu:///system")

DRIVER_PARAMS = [
    pytest.param("sim://", id="sim-memory"),
    pytest.param("sim-dir", id="sim-dir"),
    pytest.param("test:///default", id="libvirt-test"),
    pytest.param(E2E_URI, id="libvirt-qemu", marks=pytest.mark.e2e),
]


@pytest.fixture(params=DRIVER_PARAMS)
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Driver]:
    """An open driver of each kind; closed after the test."""
    uri = request.param
    if uri == "sim-dir":
        uri = f"sim://{tmp_path / 'host'}"
    if uri.startswith("qemu"):
        _require_e2e_guest()
    hv = drivers.open(uri)
    try:
        yield hv
    finally:
        hv.close()


def _require_e2e_guest() -> None:
    missing = [name for name in ("vmlinuz", "initrd.img") if not (E2E_DIR / name).exists()]
    if missing:
        pytest.fail(f"e2e guest artifacts {missing} missing in {E2E_DIR}: run scripts/e2e-setup.sh first")


def is_qemu(hv: Driver) -> bool:
    """Whether ``hv`` runs real guests (so paths must exist and guests take time to react)."""
    return hv.uri.startswith("qemu")


class SpecFactory:
    """Builds valid, unique specs for one driver and remembers them for cleanup."""

    def __init__(self, hv: Driver, workdir: Path) -> None:
        self.hv = hv
        self.workdir = workdir
        self.created: list[uuidlib.UUID] = []

    def __call__(self, **overrides: object) -> DomainSpec:
        suffix = secrets.token_hex(4)
        fields: dict[str, object] = {
            "uuid": uuidlib.uuid4(),
            "name": f"t-{suffix}",
            "memory": 192 if is_qemu(self.hv) else 128,
            "vcpus": 1,
            "max_vcpus": 2,
            "max_memory": 256,
            "boot": self.boot(),
            "metadata": {"suite": "contract"},
        }
        fields.update(overrides)
        spec = DomainSpec.model_validate(fields)
        self.created.append(spec.uuid)
        return spec

    def boot(self) -> Boot:
        if is_qemu(self.hv):
            return Boot(
                kernel=str(E2E_DIR / "vmlinuz"),
                initrd=str(E2E_DIR / "initrd.img"),
                cmdline="quiet panic=-1",  # no console=ttyS0: the domain has no serial port to write to
            )
        return Boot(kernel="/boot/vmlinuz-contract", initrd="/boot/initrd-contract", cmdline="console=ttyS0")

    def disk(self, ident: str, target: str, size: int = 1 << 20) -> Disk:
        """A disk whose image exists (QEMU opens it)."""
        image = self.workdir / f"{ident}-{secrets.token_hex(3)}.img"
        with open(image, "wb") as handle:
            handle.truncate(size)
        return Disk(id=ident, source=str(image), target=target, bus="virtio")

    def nic(self, ident: str) -> Nic:
        octets = secrets.token_bytes(3)
        return Nic(id=ident, mac="52:54:00:" + ":".join(f"{b:02x}" for b in octets), bridge=E2E_BRIDGE)

    def cleanup(self) -> None:
        for uuid in self.created:
            try:
                self.hv.destroy(uuid)
                self.hv.undefine(uuid)
            except drivers.DriverError:
                pass  # the driver may be closed or broken by the test itself


@pytest.fixture
def make_spec(driver: Driver, tmp_path: Path) -> Iterator[SpecFactory]:
    """Factory of unique specs for ``driver``; everything it made is destroyed and undefined afterwards."""
    workdir = tmp_path / "images"
    workdir.mkdir()
    factory = SpecFactory(driver, workdir)
    yield factory
    factory.cleanup()


class EventRecorder:
    """Collects events from a callback thread and waits for expected ones."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: DomainEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of(self, uuid: uuidlib.UUID) -> list[DomainEvent]:
        with self._changed:
            return [event for event in self.events if event.uuid == uuid]

    def wait_for(
        self, uuid: uuidlib.UUID, predicate: Callable[[list[DomainEvent]], bool], timeout: float = 10.0
    ) -> list[DomainEvent]:
        """Wait until ``predicate(events of uuid)`` holds and return those events; fail on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                mine = [event for event in self.events if event.uuid == uuid]
                if predicate(mine):
                    return mine
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"timed out waiting for events; got {[(e.kind, e.detail) for e in mine]}")
                self._changed.wait(remaining)

    def wait_kinds(self, uuid: uuidlib.UUID, *kinds: EventKind, timeout: float = 10.0) -> list[DomainEvent]:
        """Wait until ``kinds`` have all been seen for ``uuid``, in this order (others may interleave)."""

        def contains_in_order(events: list[DomainEvent]) -> bool:
            position = 0
            for event in events:
                if position < len(kinds) and event.kind == kinds[position]:
                    position += 1
            return position == len(kinds)

        return self.wait_for(uuid, contains_in_order, timeout)


@pytest.fixture
def recorder() -> EventRecorder:
    """A fresh EventRecorder."""
    return EventRecorder()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll ``condition`` until true or ``timeout``; returns its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(interval)
    return True


@pytest.fixture
def test_driver() -> Iterator[drivers.libvirt.LibvirtDriver]:
    """libvirt's test:///default; every domain a test lists in ``driver.made`` is destroyed and undefined
    afterwards (the test hypervisor is one per process while any connection to it is open)."""
    from drivers.libvirt import LibvirtDriver

    driver = LibvirtDriver("test:///default")
    made: list[uuidlib.UUID] = []
    driver.made = made  # type: ignore[attr-defined]
    yield driver
    for ref in made:
        driver.destroy(ref)
        driver.undefine(ref)
    driver.close()
