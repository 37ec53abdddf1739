"""Boot media, CPU, accelerator, graphics and autostart through the API (issue 19), on a real
``toolstack serve``: ``POST /vms`` takes what ``vm create`` takes, ``PATCH /vms/{vm}`` what ``vm set`` takes
(absent fields stay, null resets), and the VM record carries ``autostart``."""

from __future__ import annotations

KERNEL_BOOT = {"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0"}


def test_create_takes_a_kernel_cdrom_cpu_accel_graphics_and_autostart(live_server):
    body = {
        "name": "inst",
        "memory": "256M",
        "boot": KERNEL_BOOT,
        "cdrom": "/iso/debian.iso",
        "cpu": "host",
        "accel": "tcg",
        "graphics": "vnc",
        "autostart": True,
    }
    with live_server.client() as client:
        created = client.post("/vms", json=body)
        assert created.status_code == 201, created.text
        vm = created.json()["vm"]
        spec = vm["spec"]
        assert spec["boot"] == {**KERNEL_BOOT, "device": None}
        assert (spec["cpu"], spec["accel"], spec["graphics"], vm["autostart"]) == ("host", "tcg", "vnc", True)
        cdrom = next(d for d in spec["disks"] if d["id"] == "cdrom0")
        assert (cdrom["source"], cdrom["device"], cdrom["readonly"]) == ("/iso/debian.iso", "cdrom", True)
        assert client.get("/vms/inst").json()["autostart"] is True
        assert [v["autostart"] for v in client.get("/vms").json()] == [True]
        # A CD-ROM without a boot: it boots the installer, as vm create --cdrom does.
        live = client.post("/vms", json={"name": "live", "memory": "256M", "cdrom": "/iso/live.iso"})
        assert live.json()["vm"]["spec"]["boot"]["device"] == "cdrom"
        assert live.json()["vm"]["autostart"] is False


def test_update_changes_boot_media_and_settings_and_null_resets_them(live_server):
    with live_server.client() as client:
        assert client.post("/vms", json={"name": "web1", "memory": "256M", "start": True}).status_code == 201
        settings = {
            "boot": {"device": "cdrom"},
            "cdrom": "/iso/rescue.iso",
            "cpu": "qemu64",
            "autostart": True,
        }
        changed = client.patch("/vms/web1", json=settings)
        assert changed.status_code == 200, changed.text
        vm = changed.json()["vm"]
        assert vm["state"] == "running"  # the next boot gets them
        assert (vm["spec"]["boot"]["device"], vm["spec"]["cpu"], vm["autostart"]) == ("cdrom", "qemu64", True)
        assert [d["source"] for d in vm["spec"]["disks"] if d["device"] == "cdrom"] == ["/iso/rescue.iso"]
        assert changed.json()["task"]["detail"]["changes"]["cdrom"] == "/iso/rescue.iso"
        # Absent fields stay as they are.
        kernel = client.patch("/vms/web1", json={"boot": KERNEL_BOOT, "accel": "kvm", "graphics": "vnc"})
        spec = kernel.json()["vm"]["spec"]
        assert (spec["boot"]["kernel"], spec["cpu"], spec["accel"], spec["graphics"]) == (
            "/boot/vmlinuz",
            "qemu64",
            "kvm",
            "vnc",
        )
        # Null resets cpu, accel and graphics, and removes the CD-ROM drive.
        resets = {"cpu": None, "accel": None, "graphics": None, "cdrom": None, "autostart": False}
        reset = client.patch("/vms/web1", json=resets)
        vm = reset.json()["vm"]
        assert not {"cpu", "accel", "graphics"} & set(vm["spec"])
        assert vm["spec"]["disks"] == [] and vm["autostart"] is False
        assert client.get("/vms/web1").json()["spec"]["boot"]["kernel"] == "/boot/vmlinuz"


def test_update_refuses_bad_settings_naming_the_field_and_writes_nothing(live_server):
    with live_server.client() as client:
        assert client.post("/vms", json={"name": "web1", "memory": "256M"}).status_code == 201
        etag = client.get("/vms/web1").headers["etag"]
        refusals = [
            ({"boot": {"initrd": "/boot/initrd.img"}}, ["body", "boot"]),
            ({"boot": None}, ["body", "boot"]),
            ({"autostart": "yes"}, ["body", "autostart"]),
            ({"cpu": "bad model!"}, ["body", "cpu"]),
            ({"accel": "fast"}, ["body", "accel"]),
            ({"cdrom": "relative.iso"}, ["body", "cdrom"]),
        ]
        for body, loc in refusals:
            response = client.patch("/vms/web1", json=body)
            assert response.status_code == 422, (body, response.text)
            assert response.json()["fields"][0]["loc"][:2] == loc, body
        empty = client.patch("/vms/web1", json={})
        assert empty.status_code == 422 and "at least one field" in empty.json()["message"]
        assert client.get("/vms/web1").headers["etag"] == etag
