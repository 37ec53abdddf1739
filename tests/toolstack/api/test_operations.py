"""Lifecycle actions, devices and tasks over HTTP: 200 with the finished task, 202 with a running one to
follow, 409 busy with the running task, 409 conflict with the conflict list, failures with their task."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from tests.toolstack.api.conftest import create
from toolstack import layout
from toolstack.claims import Claims


@pytest.mark.parametrize(
    ("steps", "state", "desired"),
    [
        (["start"], "running", "running"),
        (["start", "pause"], "paused", "paused"),
        (["start", "pause", "resume"], "running", "running"),
        (["start", "reboot"], "running", "running"),
        (["start", "shutdown"], "shutoff", "stopped"),
        (["start", "destroy"], "shutoff", "stopped"),
    ],
)
def test_each_lifecycle_action_is_a_task_and_answers_with_the_vm_after_it(client, steps, state, desired):
    create(client, "life")
    for verb in steps:
        response = client.post(f"/vms/life/{verb}")
        assert response.status_code == 200, response.text
        assert response.json()["task"]["operation"] == verb
        assert response.json()["task"]["status"] == "succeeded"
    vm = response.json()["vm"]
    assert (vm["state"], vm["desired"]) == (state, desired)
    assert client.get("/vms/life").json()["state"] == state


def test_an_action_the_hypervisor_refuses_is_409_with_its_failed_task(client):
    create(client, "idle")
    response = client.post("/vms/idle/pause")  # not running
    assert response.status_code == 409
    error = response.json()
    assert error["error"] == "operation_refused"
    task = client.get(f"/tasks/{error['task']}").json()
    assert (task["status"], task["operation"]) == ("failed", "pause")
    assert "InvalidState" in task["error"]
    assert f"failed-tasks/{task['id']}" in [b["name"] for b in client.get("/branches").json()]


def test_a_hypervisor_failure_is_502_and_main_is_unchanged(client, ts):
    create(client, "fragile")
    ts.driver.faults.fail_nth("start", 1)
    head = ts.main.head
    response = client.post("/vms/fragile/start")
    assert response.status_code == 502
    assert response.json()["error"] == "operation_failed"
    assert client.get(f"/tasks/{response.json()['task']}").json()["status"] == "failed"
    assert ts.main.head == head


def test_devices_attach_and_detach_as_tasks(client):
    create(client, "dev", start=True)
    disk = client.post("/vms/dev/disks", json={"source": "/srv/data.img", "readonly": True})
    assert disk.status_code == 200, disk.text
    assert disk.json()["task"]["operation"] == "disk attach"
    disks = disk.json()["vm"]["spec"]["disks"]
    assert [(d["id"], d["target"], d["readonly"]) for d in disks] == [("disk0", "vda", True)]
    nic = client.post("/vms/dev/nics", json={"bridge": "br0", "id": "uplink"})
    assert nic.status_code == 200
    assert nic.json()["vm"]["spec"]["nics"][0]["bridge"] == "br0"
    gone = client.delete("/vms/dev/devices/disk0")
    assert gone.status_code == 200
    assert gone.json()["vm"]["spec"]["disks"] == []
    missing = client.delete("/vms/dev/devices/disk0")
    assert (missing.status_code, missing.json()["error"]) == (422, "invalid_input")
    both = client.post("/vms/dev/nics", json={"bridge": "br0", "network": "default"})
    assert both.status_code == 422 and "exactly one" in both.json()["message"]
    relative = client.post("/vms/dev/disks", json={"source": "data.img"})
    assert relative.json()["fields"][0]["loc"] == ["body", "source"]


def _slow_shutdown(client, ts, name: str, seconds: float, **params: object):
    """Start a VM whose guest ignores the power button: a forced shutdown then takes ``seconds``."""
    create(client, name, start=True)
    ts.driver.oob_ignore_shutdown(ts.vm(name).uuid)
    return client.post(
        f"/vms/{name}/shutdown", json={"timeout": seconds, "force": True}, params=params or {"wait": 0}
    )


def test_a_long_operation_answers_202_with_its_task_which_is_followed_to_its_end(client, ts):
    response = _slow_shutdown(client, ts, "slow", 1.0)
    assert response.status_code == 202
    task = response.json()["task"]
    assert task["status"] == "running" and task["operation"] == "shutdown"
    assert response.headers["location"] == f"/tasks/{task['id']}"
    assert response.json()["vm"] is None
    assert client.get(f"/tasks/{task['id']}").json()["status"] == "running"
    assert task["id"] in [t["id"] for t in client.get("/tasks", params={"status": "running"}).json()["items"]]
    deadline = time.monotonic() + 20
    while client.get(f"/tasks/{task['id']}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.get(f"/tasks/{task['id']}").json()["status"] == "succeeded"
    assert client.get("/vms/slow").json()["state"] == "shutoff"


def test_a_busy_vm_is_409_with_the_running_task(client, ts):
    running = _slow_shutdown(client, ts, "busy", 1.5).json()["task"]
    response = client.post("/vms/busy/start")
    assert response.status_code == 409
    error = response.json()
    assert (error["error"], error["task"], error["running_operation"]) == ("busy", running["id"], "shutdown")
    assert client.patch("/vms/busy", json={"memory": 64}).json()["task"] == running["id"]


def test_a_merge_conflict_is_409_with_the_structured_conflict_list(client, ts):
    """While a shutdown runs, someone else (another host, a GitOps edit) sets the VM's desired state on main:
    the task's outcome cannot merge, and the client gets every conflicting path with its three values."""
    create(client, "contested", start=True)
    uuid = ts.vm("contested").uuid
    ts.driver.oob_ignore_shutdown(uuid)
    answer: dict = {}

    def shutdown() -> None:
        answer["response"] = client.post(
            "/vms/contested/shutdown", json={"timeout": 1.0, "force": True}, params={"wait": 30}
        )

    worker = threading.Thread(target=shutdown)
    worker.start()
    deadline = time.monotonic() + 10
    while uuid not in Claims(ts.store).busy():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with ts.main.transaction(message="gitops: keep it paused", author="bob") as tx:
        tx.set(layout.desired_path(uuid), b"paused\n")
    worker.join(30)
    response = answer["response"]
    assert response.status_code == 409, response.text
    error = response.json()
    assert error["error"] == "conflict"
    assert error["conflicts"] == [
        {
            "path": layout.desired_path(uuid),
            "reason": error["conflicts"][0]["reason"],
            "base": "running\n",
            "ours": "paused\n",
            "theirs": "stopped\n",
        }
    ]


def test_tasks_are_listed_newest_first_filtered_and_paged(client):
    create(client, "t1")
    assert client.post("/vms/t1/start").status_code == 200
    create(client, "t2")
    client.post("/vms/t2/pause")  # fails: not running
    page = client.get("/tasks", params={"limit": 3}).json()
    assert [(t["operation"], t["vm_name"]) for t in page["items"]] == [
        ("pause", "t2"),
        ("create", "t2"),
        ("start", "t1"),
    ]
    assert page["next_offset"] == 3
    rest = client.get("/tasks", params={"limit": 3, "offset": 3}).json()
    assert [(t["operation"], t["vm_name"]) for t in rest["items"]] == [("create", "t1")]
    assert rest["next_offset"] is None
    failed = client.get("/tasks", params={"status": "failed"}).json()["items"]
    assert [t["operation"] for t in failed] == ["pause"]
    assert {t["vm_name"] for t in client.get("/tasks", params={"vm": "t1"}).json()["items"]} == {"t1"}
    assert client.get("/tasks/nope").status_code == 404
    assert client.get("/tasks", params={"limit": 0}).json()["fields"][0]["loc"] == ["query", "limit"]


def test_the_app_runs_operations_again_after_its_lifespan_restarts(app):
    """Stopping the app waits for its operations and stops their workers; starting it again restarts them."""
    from fastapi.testclient import TestClient

    from tests.toolstack.api.conftest import AUTH

    for name in ("first", "second"):
        with TestClient(app, headers=AUTH) as client:
            assert client.post("/vms", json={"name": name, "memory": 64}).status_code == 201


def test_an_operation_that_fails_after_its_request_was_answered_leaves_no_unretrieved_error(
    client, ts, caplog
):
    """A 202 hands the task out; the operation failing later is recorded on its task (and logged once, by
    the API, with the task's id), not reported by asyncio as an error nobody retrieved."""
    create(client, "stubborn", start=True)
    ts.driver.oob_ignore_shutdown(ts.vm("stubborn").uuid)
    response = client.post(
        "/vms/stubborn/shutdown", json={"timeout": 0.3, "force": False}, params={"wait": 0}
    )
    assert response.status_code == 202
    task = response.json()["task"]["id"]
    deadline = time.monotonic() + 20
    while client.get(f"/tasks/{task}").json()["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.get(f"/tasks/{task}").json()["status"] == "failed"
    client.get("/health")  # one more turn of the server's event loop, then collect what it dropped
    gc.collect()
    messages = [record.getMessage() for record in caplog.records]
    assert not [m for m in messages if "never retrieved" in m], messages
    assert [m for m in messages if task in m and "failed" in m], messages
