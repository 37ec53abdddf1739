"""The API's VMs seen from any host (issue 16, items 7 and 9): a VM placed on another host carries that host's
last report and its age; a broken entry is listed alone, with its path and error, and the others as usual."""

from __future__ import annotations

import time

from toolstack import layout
from toolstack.models import Observed


def report(ts, host: str, uuid: str, state: str, seen_at: float) -> None:
    """Commit a host's report of a VM, as that host's agent pushes it under hosts/<host>/."""
    record = Observed(state=state, domid=7, memory=256, vcpus=1, seen_at=seen_at).encode()
    with ts.main.transaction(message=f"agent {host}: observed", author=f"agent {host}") as tx:
        tx.tree = layout.with_observed(tx.tree, host, uuid, record)


def test_a_remote_vm_shows_its_hosts_report_and_a_broken_one_its_error(client, ts):
    local = ts.create("here", memory="256M", start=True)
    remote = ts.create("far", memory="256M", host="h2")
    broken = ts.create("bad", memory="256M")
    report(ts, "h2", remote.uuid, "running", time.time() - 12)
    with ts.main.transaction(message="store set", author="someone") as tx:
        tx.set(layout.config_path(broken.uuid), b"{broken")

    listed = client.get("/vms")
    assert listed.status_code == 200, listed.text
    vms = {vm["name"]: vm for vm in listed.json()}
    assert vms["here"]["local"] is True and vms["here"]["state"] == "running"
    assert vms["here"]["host"] == ts.host and vms["here"]["reported_at"] is None
    far = vms["far"]
    assert (far["host"], far["local"], far["state"]) == ("h2", False, "running")
    assert 12 <= far["age"] < 60 and far["reported_at"] is not None
    bad = vms["bad"]
    assert bad["broken"] is True and bad["state"] == "broken" and bad["spec"] is None
    assert bad["error"]["path"] == layout.config_path(broken.uuid)
    assert bad["error"]["message"].startswith("is not valid JSON")

    shown = client.get("/vms/bad")
    assert shown.status_code == 200 and shown.json()["error"] == bad["error"]
    assert client.get(f"/vms/{remote.uuid}").json()["state"] == "running"
    # An operation on the remote VM is queued: its state stays what h2 last reported.
    stopped = client.post("/vms/far/destroy")
    assert stopped.status_code == 200 and stopped.json()["vm"]["desired"] == "stopped"
    assert stopped.json()["vm"]["state"] == "running" and stopped.json()["vm"]["host"] == "h2"
    assert ts.info(local) is not None and ts.info(remote) is None
