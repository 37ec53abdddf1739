"""libvirt drivers: ``test:///default`` (libvirt's in-process test hypervisor), ``qemu:///system``, ``xen:///system``.

``binding`` is the only module importing libvirt; ``xml`` converts DomainSpec ↔ domain XML; ``errors`` maps
libvirtError codes; ``connection`` keeps a connection alive and its events flowing.
"""

from drivers.libvirt.driver import LibvirtDriver

__all__ = ["LibvirtDriver"]
