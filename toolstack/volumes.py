"""Disk images a new VM asks for by path, size and format: ``vm create --disk PATH,size=20G,format=qcow2``
and ``POST /vms`` with ``disks: [{"path": ..., "size": "20G", "format": "qcow2"}]`` both come here.

A sized image that is missing is created through the driver's storage (``Driver.create_volume``: libvirt's
storage API, a sparse file on the simulator) before the VM is defined, and removed again if the VM is not.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from drivers.errors import DomainExists, InvalidArgument, Unsupported
from toolstack.errors import InvalidInput

if TYPE_CHECKING:
    from drivers import Driver

T = TypeVar("T")
VolumeFormat = Literal["raw", "qcow2"]


@dataclass(frozen=True)
class VolumeRequest:
    """A disk image by path: used as it is if it exists; created with ``size_mib`` if it does not.

    Attributes:
        path: Absolute path of the image on the host.
        size_mib: Its size when it has to be created; None: it must exist (it is not created).
        format: ``raw`` or ``qcow2``: the disk's format, and the new image's.
    """

    path: str
    size_mib: int | None
    format: VolumeFormat


def default_format(path: str) -> VolumeFormat:
    """The format a path implies: ``qcow2`` for ``*.qcow2``, else ``raw`` (as a disk given by path gets)."""
    return "qcow2" if path.endswith(".qcow2") else "raw"


def with_new_volumes(
    driver: Driver, volumes: Iterable[VolumeRequest], create: Callable[[], T]
) -> tuple[T, list[str]]:
    """Create the sized images that are missing, then call ``create`` (which defines the VM using them).

    Returns:
        What ``create`` returned, and the paths of the images created here.

    Raises:
        InvalidInput: an image cannot be made (its directory is missing, the hypervisor has no storage, the
            file system refuses the size...): the message names it.
        Whatever ``create`` raises. Either way the images created here are removed first (the VM was not
            created: neither are its new images).
    """
    created: list[str] = []
    try:
        for volume in volumes:
            if volume.size_mib is not None and not os.path.exists(volume.path):
                try:
                    driver.create_volume(volume.path, volume.size_mib, volume.format)
                except (InvalidArgument, DomainExists, Unsupported) as err:
                    raise InvalidInput(f"disk image {volume.path}: {err.message}") from err
                created.append(volume.path)
        return create(), created
    except (Exception, KeyboardInterrupt):
        for path in created:
            with contextlib.suppress(OSError):
                os.unlink(path)
        raise
