"""Pending changes through the API (issue 19), on a real ``toolstack serve``: the VM record lists what the
running domain gets only at its next boot, with its live and next-boot values, and ``POST
/vms/{vm}/reboot`` with ``"apply": true`` restarts it from that definition; a malformed body is refused by
name and changes nothing."""

from __future__ import annotations


def test_the_vm_record_lists_pending_changes_and_reboot_apply_clears_them(live_server):
    with live_server.client() as client:
        assert client.post("/vms", json={"name": "web1", "memory": "256M", "start": True}).status_code == 201
        assert client.get("/vms/web1").json()["pending"] == []
        assert client.patch("/vms/web1", json={"memory": "1G", "cpu": "host"}).status_code == 200
        vm = client.get("/vms/web1").json()
        found = {p["field"]: (p["live"], p["next_boot"], p["unit"]) for p in vm["pending"]}
        assert found == {
            "memory": (256, 1024, "MiB"),
            "max_memory": (256, 1024, "MiB"),
            "cpu": (None, "host", ""),
        }
        assert [v["pending"] for v in client.get("/vms").json()] == [vm["pending"]]
        # The guest's reboot keeps the running configuration.
        assert client.post("/vms/web1/reboot").status_code == 200
        assert len(client.get("/vms/web1").json()["pending"]) == 3
        refused = client.post("/vms/web1/reboot", json={"apply": "yes"})
        assert refused.status_code == 422 and "apply" in refused.text
        assert len(client.get("/vms/web1").json()["pending"]) == 3
        applied = client.post("/vms/web1/reboot", json={"apply": True})
        assert applied.status_code == 200, applied.text
        after = applied.json()["vm"]
        assert (after["state"], after["pending"]) == ("running", [])
