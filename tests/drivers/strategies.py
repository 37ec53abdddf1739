"""Hypothesis strategies producing valid DomainSpecs (and their parts)."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from drivers.models import Boot, Disk, DomainSpec, Nic

_ALNUM = string.ascii_letters + string.digits
names = st.builds(
    lambda head, tail: head + tail,
    st.sampled_from(string.ascii_letters),
    st.text(alphabet=_ALNUM + "._-", max_size=20),
)
device_ids = st.builds(
    lambda head, tail: head + tail, st.sampled_from(_ALNUM), st.text(alphabet=_ALNUM + "_-", max_size=12)
)
paths = st.lists(st.text(alphabet=_ALNUM + "._-", min_size=1, max_size=10), min_size=1, max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
free_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co"), blacklist_characters='"'),
    max_size=30,
)
macs = (
    st.lists(st.integers(0, 255), min_size=5, max_size=5)
    .flatmap(lambda tail: st.integers(0, 127).map(lambda first: [first * 2, *tail]))
    .map(lambda octets: ":".join(f"{octet:02x}" for octet in octets))
)

boots = st.one_of(
    st.builds(Boot, device=st.sampled_from(["hd", "cdrom", "network"])),
    st.builds(
        Boot,
        kernel=paths,
        initrd=st.none() | paths,
        cmdline=st.none() | free_text.filter(lambda text: text == text.strip() and text != ""),
    ),
)


@st.composite
def disks(draw: st.DrawFn, index: int, ident: str) -> Disk:
    prefix, bus = draw(st.sampled_from([("vd", "virtio"), ("sd", "scsi"), ("sd", "sata"), ("hd", "ide")]))
    return Disk(
        id=ident,
        source=draw(paths),
        format=draw(st.sampled_from(["raw", "qcow2"])),
        target=prefix + string.ascii_lowercase[index],
        bus=bus,
        readonly=draw(st.booleans()),
    )


@st.composite
def nics(draw: st.DrawFn, ident: str, mac: str) -> Nic:
    attachment = draw(st.sampled_from(["network", "bridge"]))
    value = draw(st.text(alphabet=_ALNUM, min_size=1, max_size=12))
    return Nic(
        id=ident,
        mac=mac,
        model=draw(st.sampled_from(["virtio", "e1000", "rtl8139"])),
        **{attachment: value},
    )


@st.composite
def domain_specs(draw: st.DrawFn) -> DomainSpec:
    disk_count = draw(st.integers(0, 3))
    nic_count = draw(st.integers(0, 2))
    ids = draw(
        st.lists(device_ids, min_size=disk_count + nic_count, max_size=disk_count + nic_count, unique=True)
    )
    mac_list = draw(st.lists(macs, min_size=nic_count, max_size=nic_count, unique=True))
    memory = draw(st.integers(1, 1 << 20))
    vcpus = draw(st.integers(1, 16))
    return DomainSpec(
        uuid=draw(st.uuids()),
        name=draw(names.filter(lambda name: not name.isdigit())),
        memory=memory,
        max_memory=draw(st.none() | st.integers(memory, 1 << 21)),
        vcpus=vcpus,
        max_vcpus=draw(st.none() | st.integers(vcpus, 64)),
        boot=draw(boots),
        disks=tuple(draw(disks(index, ids[index])) for index in range(disk_count)),
        nics=tuple(draw(nics(ids[disk_count + index], mac_list[index])) for index in range(nic_count)),
        on_poweroff=draw(st.sampled_from(["destroy", "restart", "preserve"])),
        on_reboot=draw(st.sampled_from(["destroy", "restart", "preserve"])),
        on_crash=draw(
            st.sampled_from(["destroy", "restart", "preserve", "coredump-destroy", "coredump-restart"])
        ),
        metadata=draw(
            st.dictionaries(st.text(alphabet=_ALNUM + "._-", min_size=1, max_size=10), free_text, max_size=3)
        ),
    )
