"""``POST /vms`` takes what ``vm create --disk PATH,size=20G,format=qcow2`` takes (issue 19): a disk image by
path and size, created through the hypervisor's storage when it is missing, used as it is when it exists, and
removed again when the VM is not created. On the simulator, whose storage makes sparse files."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.toolstack.api.conftest import AUTH, TOKEN, create
from tests.toolstack.conftest import unique
from toolstack.api import ApiSettings, create_app
from toolstack.ops import Toolstack


def test_create_makes_a_missing_sized_image_and_the_vm_uses_it(client: TestClient, tmp_path: Path):
    image = tmp_path / "root.img"
    vm = create(client, "web1", disks=[{"path": str(image), "size": "2G", "format": "qcow2"}])["vm"]
    assert image.stat().st_size == 2 << 30
    [disk] = vm["spec"]["disks"]
    assert (disk["id"], disk["source"], disk["target"], disk["format"]) == (
        "disk0",
        str(image),
        "vda",
        "qcow2",
    )
    # Sizes are MiB or text, and the format follows the path as for a disk given by path.
    data = tmp_path / "data.qcow2"
    vm = create(client, "web2", disks=[{"path": str(data), "size": 64}])["vm"]
    assert data.stat().st_size == 64 << 20 and vm["spec"]["disks"][0]["format"] == "qcow2"


def test_an_existing_image_is_used_as_it_is(client: TestClient, tmp_path: Path):
    image = tmp_path / "golden.img"
    image.write_bytes(b"boot sector")
    vm = create(client, "web1", disks=[{"path": str(image), "size": "20G"}])["vm"]
    assert image.read_bytes() == b"boot sector"
    assert vm["spec"]["disks"][0]["format"] == "raw"


def test_volumes_take_the_ids_and_targets_the_disks_given_whole_leave_free(
    client: TestClient, tmp_path: Path
):
    whole = {"id": "disk0", "source": "/images/base.img", "target": "vda"}
    new = {"path": str(tmp_path / "scratch.img"), "size": "1G"}
    vm = create(client, "web1", disks=[whole, new, "/images/other.img"])["vm"]
    placed = [(d["id"], d["target"], d["source"]) for d in vm["spec"]["disks"]]
    assert placed == [
        ("disk0", "vda", "/images/base.img"),
        ("disk1", "vdb", new["path"]),
        ("disk2", "vdc", "/images/other.img"),
    ]


def test_an_image_made_for_a_vm_that_is_not_created_is_removed(client: TestClient, tmp_path: Path):
    create(client, "web1")
    image = tmp_path / "orphan.img"
    taken = client.post(
        "/vms", json={"name": "web1", "memory": 64, "disks": [{"path": str(image), "size": 8}]}
    )
    assert taken.status_code == 409, taken.text
    assert not image.exists()
    assert [v["name"] for v in client.get("/vms").json()] == ["web1"]


def test_a_bad_size_format_or_path_is_refused_naming_the_field_and_nothing_is_made(
    client: TestClient, tmp_path: Path
):
    image = tmp_path / "bad.img"
    refusals = [
        ({"path": str(image), "size": "lots"}, ["body", "disks", 0, "volume", "size"]),
        ({"path": str(image), "size": 0}, ["body", "disks", 0, "volume", "size"]),
        ({"path": str(image), "size": 8, "format": "vmdk"}, ["body", "disks", 0, "volume", "format"]),
        ({"path": "relative.img", "size": 8}, ["body", "disks", 0, "volume", "path"]),
        ({"path": str(image), "size": 8, "sise": 9}, ["body", "disks", 0, "volume", "sise"]),
    ]
    for volume, loc in refusals:
        refused = client.post("/vms", json={"name": "web1", "memory": 64, "disks": [volume]})
        assert refused.status_code == 422, (volume, refused.text)
        assert loc in [field["loc"][: len(loc)] for field in refused.json()["fields"]], refused.json()
    assert not image.exists() and client.get("/vms").json() == []


def test_an_image_that_cannot_be_made_is_a_422_naming_it(client: TestClient, tmp_path: Path):
    image = tmp_path / "no-such-dir" / "root.img"
    refused = client.post(
        "/vms", json={"name": "web1", "memory": 64, "disks": [{"path": str(image), "size": 8}]}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"] == "invalid_input"
    assert (
        refused.json()["message"] == f"disk image {image}: cannot create {image}: No such file or directory"
    )
    assert client.get("/vms").json() == []


def test_libvirt_s_test_driver_has_no_storage_to_make_an_image_with(tmp_path: Path):
    ts = Toolstack.init(str(tmp_path / "state.git"), "test:///default", author="Tester <t@example.org>")
    try:
        with TestClient(create_app(ts, TOKEN, ApiSettings()), headers=AUTH) as client:
            image = tmp_path / "root.img"
            body = {"name": unique("vol"), "memory": 64, "disks": [{"path": str(image), "size": 8}]}
            refused = client.post("/vms", json=body)
            assert refused.status_code == 422, refused.text
            assert "has no storage on disk" in refused.json()["message"]
            assert not image.exists() and ts.vms() == []
    finally:
        ts.close()
