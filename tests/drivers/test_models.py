"""Domain models: invalid specs are refused before any hypervisor call, with messages naming the field."""

from __future__ import annotations

import uuid as uuidlib

import pytest
from hypothesis import given
from pydantic import ValidationError

from drivers import DEVICE, Boot, Disk, DomainSpec, Nic, as_uuid, models, parse_memory
from drivers.errors import InvalidArgument
from tests.drivers.strategies import domain_specs


def spec(**overrides: object) -> DomainSpec:
    fields: dict[str, object] = {"uuid": uuidlib.uuid4(), "name": "vm1", "memory": 512}
    fields.update(overrides)
    return DomainSpec.model_validate(fields)


def rejected(**overrides: object) -> str:
    """The validation message for a spec built with ``overrides`` (the test fails if it is accepted)."""
    with pytest.raises(ValidationError) as caught:
        spec(**overrides)
    return str(caught.value)


@pytest.mark.parametrize(
    ("text", "mib"),
    [
        ("512", 512),
        ("512M", 512),
        ("512MiB", 512),
        ("2G", 2048),
        ("2 GiB", 2048),
        ("1T", 1 << 20),
        (768, 768),
    ],
)
def test_parse_memory_understands_the_usual_units(text: str | int, mib: int):
    assert parse_memory(text) == mib


@pytest.mark.parametrize("text", ["12XB", "", "-5", "0", "1.5G", "G", "2 G B"])
def test_parse_memory_names_the_bad_text(text: str):
    with pytest.raises(ValueError, match=repr(text).replace("\\", "\\\\").replace(".", r"\.")):
        parse_memory(text)


def test_memory_must_be_positive_and_the_message_names_the_field():
    message = rejected(memory=0)
    assert "memory" in message and "greater than 0" in message
    assert "memory" in rejected(memory=-1)


def test_memory_accepts_text_sizes():
    assert spec(memory="2G", max_memory="4G").max_memory == 4096


def test_maxima_below_the_boot_values_are_refused():
    assert "max_memory" in rejected(memory=1024, max_memory=512)
    assert "max_vcpus" in rejected(vcpus=4, max_vcpus=2)


def test_maxima_equal_to_the_boot_values_are_the_same_spec():
    ref = uuidlib.uuid4()
    explicit = spec(uuid=ref, memory=512, max_memory="512M", vcpus=2, max_vcpus=2)
    implicit = spec(uuid=ref, memory=512, vcpus=2)
    assert explicit == implicit
    assert (explicit.max_memory, explicit.max_vcpus) == (None, None)


@pytest.mark.parametrize("name", ["a/b", "has space", "-lead", ".hidden", "x" * 65, "1234", "", "é"])
def test_names_libvirt_or_xl_refuse_are_rejected(name: str):
    assert "name" in rejected(name=name)


def test_duplicate_device_ids_targets_and_macs_are_rejected():
    disk = Disk(id="root", source="/a.img", target="vda")
    assert "duplicate device id 'root'" in rejected(
        disks=[disk], nics=[Nic(id="root", mac="52:54:00:00:00:01", bridge="br0")]
    )
    assert "duplicate disk target dev 'vda'" in rejected(
        disks=[disk, disk.model_copy(update={"id": "other"})]
    )
    nic = Nic(id="eth0", mac="52:54:00:00:00:01", bridge="br0")
    assert "duplicate nic MAC address" in rejected(nics=[nic, nic.model_copy(update={"id": "eth1"})])


@pytest.mark.parametrize(
    "mac", ["52:54:00:00:00", "zz:54:00:00:00:01", "01:00:5e:00:00:01", "5254.0000.0001"]
)
def test_bad_or_multicast_macs_are_rejected_naming_the_mac(mac: str):
    with pytest.raises(ValidationError, match="mac"):
        Nic(id="eth0", mac=mac, bridge="br0")


def test_macs_are_normalised_to_lower_case():
    assert Nic(id="eth0", mac="52-54-00-AB-CD-EF", bridge="br0").mac == "52:54:00:ab:cd:ef"


def test_a_nic_needs_exactly_one_of_network_or_bridge():
    for attachment in ({}, {"network": "default", "bridge": "br0"}):
        with pytest.raises(ValidationError, match="exactly one of 'network' or 'bridge'"):
            Nic(id="eth0", mac="52:54:00:00:00:01", **attachment)


def test_unknown_bus_and_relative_paths_are_rejected():
    with pytest.raises(ValidationError, match="bus"):
        Disk(id="d", source="/a.img", target="vda", bus="floppy")
    with pytest.raises(ValidationError, match="absolute path"):
        Disk(id="d", source="a.img", target="vda")
    with pytest.raises(ValidationError, match="target"):
        Disk(id="d", source="/a.img", target="nvme0n1")


def test_boot_is_a_kernel_or_a_device_never_both():
    with pytest.raises(ValidationError, match="mutually exclusive"):
        Boot(kernel="/k", device="hd")
    with pytest.raises(ValidationError, match="need a 'kernel'"):
        Boot(device="hd", cmdline="quiet")
    with pytest.raises(ValidationError, match="either 'kernel' or 'device'"):
        Boot()


@pytest.mark.parametrize(
    ("model", "fields", "field", "message"),
    [
        (Disk, {"source": "/a.img", "target": "vda"}, {"id": "root\n"}, "invalid device id"),
        (Disk, {"id": "d", "source": "/a.img"}, {"target": "vda\n"}, "invalid disk target dev"),
        (Nic, {"id": "eth0", "mac": "52:54:00:00:00:01"}, {"bridge": "br0\n"}, "invalid bridge name"),
        (Nic, {"id": "eth0", "mac": "52:54:00:00:00:01"}, {"network": "default\n"}, "invalid network name"),
        (Nic, {"id": "eth0", "bridge": "br0"}, {"mac": "52:54:00:00:00:01\n"}, "invalid MAC address"),
    ],
)
def test_patterns_match_whole_values_a_trailing_newline_is_refused(
    model: type, fields: dict, field: dict, message: str
):
    # Python's '$' also matches before a final newline: the patterns are matched whole.
    with pytest.raises(ValidationError, match=message):
        model(**fields, **field)
    assert "name" in rejected(name="vm1\n")


def test_the_json_schema_declares_the_constraints_the_validators_enforce():
    disk = Disk.model_json_schema()["properties"]
    assert disk["id"]["pattern"] == models.DEVICE_ID_RE.pattern
    assert disk["source"]["pattern"] == models.DISK_SOURCE_RE.pattern
    assert disk["target"]["pattern"] == models.TARGET_RE.pattern
    nic = Nic.model_json_schema()
    assert nic["properties"]["mac"]["pattern"] == models.MAC_INPUT_RE.pattern
    assert {"type": "string", "pattern": models.BRIDGE_RE.pattern} in nic["properties"]["bridge"]["anyOf"]
    assert [choice["required"] for choice in nic["oneOf"]] == [["network"], ["bridge"]]
    boot = Boot.model_json_schema()
    assert [choice["required"] for choice in boot["oneOf"]] == [["kernel"], ["device"]]
    assert {"type": "string", "pattern": models.BOOT_PATH_RE.pattern} in boot["properties"]["kernel"]["anyOf"]


def test_the_accepted_mac_form_is_what_the_schema_states():
    for mac in ("52:54:00:AB:cd:ef", " 52-54-00-ab-cd-ef\t", "02:00:00:00:00:01"):
        assert models.MAC_INPUT_RE.fullmatch(mac)
        assert models.MAC_RE.fullmatch(Nic(id="eth0", mac=mac, bridge="br0").mac)
    for mac in ("01:00:5e:00:00:01", "\n52:54:00:00:00:01", "52:54:00:00:00:01\n", ""):
        assert not models.MAC_INPUT_RE.fullmatch(mac)
        with pytest.raises(ValidationError, match="invalid MAC address"):
            Nic(id="eth0", mac=mac, bridge="br0")


def test_a_refusal_names_the_problem_not_the_bare_pattern():
    with pytest.raises(ValidationError) as caught:
        Nic(id="", mac="", bridge="br0")
    text = str(caught.value)
    assert "invalid device id ''" in text and "invalid MAC address ''" in text
    assert "String should match pattern" not in text


def test_coredump_actions_are_only_for_crashes():
    assert "on_poweroff" in rejected(on_poweroff="coredump-destroy")
    assert spec(on_crash="coredump-restart").on_crash == "coredump-restart"


def test_a_device_file_parses_back_on_its_own_through_its_kind():
    disk = Disk(id="root", source="/a.img", target="vda")
    nic = Nic(id="eth0", mac="52:54:00:00:00:01", network="default")
    assert DEVICE.validate_json(disk.model_dump_json()) == disk
    assert DEVICE.validate_python(nic.model_dump(mode="json")) == nic
    with pytest.raises(ValidationError, match="kind"):
        DEVICE.validate_python({"id": "x"})


def test_as_uuid_accepts_text_and_refuses_garbage_with_invalid_argument():
    ref = uuidlib.uuid4()
    assert as_uuid(str(ref)) == ref
    with pytest.raises(InvalidArgument, match="'nope' is not a valid domain UUID"):
        as_uuid("nope")


@given(domain_specs())
def test_specs_survive_a_json_round_trip(original: DomainSpec):
    assert DomainSpec.model_validate_json(original.model_dump_json()) == original
    assert DomainSpec.model_validate(original.model_dump(mode="json")) == original


@given(domain_specs())
def test_the_config_without_devices_plus_device_files_rebuilds_the_spec(original: DomainSpec):
    config = original.model_dump(mode="json", exclude={"disks", "nics"})
    devices = [DEVICE.validate_json(device.model_dump_json()) for device in original.devices]
    rebuilt = DomainSpec.model_validate(
        {
            **config,
            "disks": [d for d in devices if isinstance(d, Disk)],
            "nics": [n for n in devices if isinstance(n, Nic)],
        }
    )
    assert rebuilt == original
