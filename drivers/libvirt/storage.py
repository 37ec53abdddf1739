"""Volumes through libvirt's storage API: a disk image created where a new VM's ``--disk`` names one."""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET
from typing import Any

from drivers.errors import DomainExists, InvalidArgument
from drivers.libvirt import binding

_NO_SUPPORT = 3  # VIR_ERR_NO_SUPPORT: the connection's driver lacks the call
_NO_STORAGE_POOL = 49  # VIR_ERR_NO_STORAGE_POOL


def create_volume(conn: Any, path: str, size_mib: int, fmt: str) -> None:
    """Create the image ``path`` of ``size_mib`` MiB in format ``fmt`` (raw or qcow2) in the storage pool
    whose target is its directory; with no such pool, a transient ``dir`` pool on that directory is started
    for the call (and stopped after it: the directory and the image stay).

    Raises:
        DomainExists: ``path`` exists already (nothing is overwritten).
        InvalidArgument: the directory does not exist.
        libvirtError: libvirt refused, for the caller to translate.
    """
    if os.path.exists(path):
        raise DomainExists(f"{path} exists already: not overwritten", operation="create_volume")
    directory, name = os.path.split(path)
    if not os.path.isdir(directory):
        raise InvalidArgument(f"{directory} is not a directory", operation="create_volume")
    transient = None
    pool = _pool_on(conn, directory)
    if pool is None:
        pool = transient = conn.storagePoolCreateXML(_pool_xml(directory), 0)
    try:
        pool.refresh(0)
        pool.createXML(_volume_xml(name, size_mib, fmt), 0)
    finally:
        if transient is not None:
            transient.destroy()  # a transient pool disappears; its directory and volumes stay


def _pool_on(conn: Any, directory: str) -> Any:
    """The storage pool whose target is ``directory``, or None.

    ``virStoragePoolLookupByTargetPath`` where the connection's driver has it; otherwise (libvirt's test
    driver, libvirt before 4.1) the pools' own XML says where each one is.
    """
    lv = binding.module()
    try:
        return conn.storagePoolLookupByTargetPath(directory)
    except lv.libvirtError as error:
        if error.get_error_code() == _NO_STORAGE_POOL:
            return None
        if error.get_error_code() != _NO_SUPPORT:
            raise
    wanted = os.path.normpath(directory)
    for pool in conn.listAllStoragePools(0):
        target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
        if target is not None and os.path.normpath(target) == wanted:
            return pool
    return None


def _pool_xml(directory: str) -> str:
    pool = ET.Element("pool", {"type": "dir"})
    digest = hashlib.sha1(directory.encode()).hexdigest()[:12]
    ET.SubElement(pool, "name").text = f"toolstack-{digest}"
    ET.SubElement(ET.SubElement(pool, "target"), "path").text = directory
    return ET.tostring(pool, encoding="unicode")


def _volume_xml(name: str, size_mib: int, fmt: str) -> str:
    volume = ET.Element("volume")
    ET.SubElement(volume, "name").text = name
    ET.SubElement(volume, "capacity", {"unit": "MiB"}).text = str(size_mib)
    ET.SubElement(volume, "allocation", {"unit": "MiB"}).text = "0"  # sparse / thin
    ET.SubElement(ET.SubElement(volume, "target"), "format", {"type": fmt})
    return ET.tostring(volume, encoding="unicode")
