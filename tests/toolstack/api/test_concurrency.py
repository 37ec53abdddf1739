"""Concurrent clients of a real ``toolstack serve``: edits of different VMs all succeed; edits of one VM
with a stale ETag get 412, and of concurrent writers holding one ETag exactly one wins."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor


def test_two_clients_editing_different_vms_at_the_same_time_both_succeed(live_server):
    with live_server.client() as http:
        for name in ("left", "right"):
            assert http.post("/vms", json={"name": name, "memory": 64, "start": True}).status_code == 201
    barrier = threading.Barrier(2)

    def edit(name: str) -> list[int]:
        statuses = []
        with live_server.client() as http:
            barrier.wait()
            for memory in range(100, 110):
                etag = http.get(f"/vms/{name}").headers["etag"]
                response = http.patch(f"/vms/{name}", json={"memory": memory}, headers={"If-Match": etag})
                statuses.append(response.status_code)
        return statuses

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(edit, ["left", "right"]))
    assert results == [[200] * 10, [200] * 10]
    with live_server.client() as http:
        for name in ("left", "right"):
            vm = http.get(f"/vms/{name}").json()
            assert (vm["spec"]["memory"], vm["state"]) == (109, "running")
            sets = [h for h in http.get(f"/vms/{name}/history").json()["items"] if "vm set" in h["message"]]
            assert len(sets) == 10


def test_a_write_with_a_stale_etag_gets_412_and_changes_nothing(live_server):
    with live_server.client() as alice, live_server.client() as bob:
        assert alice.post("/vms", json={"name": "shared", "memory": 64}).status_code == 201
        seen_by_alice = alice.get("/vms/shared").headers["etag"]
        seen_by_bob = bob.get("/vms/shared").headers["etag"]
        assert (
            alice.patch("/vms/shared", json={"memory": 128}, headers={"If-Match": seen_by_alice}).status_code
            == 200
        )
        stale = bob.patch("/vms/shared", json={"memory": 256}, headers={"If-Match": seen_by_bob})
        assert stale.status_code == 412
        assert stale.json()["error"] == "precondition_failed"
        assert bob.get("/vms/shared").json()["spec"]["memory"] == 128


def test_of_concurrent_writers_holding_the_same_etag_exactly_one_wins(live_server):
    """Writers that all passed the If-Match check race for the VM: one wins; the others are refused, as busy
    (409) while it holds the VM, or by the re-check under the claim once it has moved on (412)."""
    with live_server.client() as http:
        assert http.post("/vms", json={"name": "raced", "memory": 64}).status_code == 201
        etag = http.get("/vms/raced").headers["etag"]
    writers = 6
    barrier = threading.Barrier(writers)

    def write(memory: int) -> int:
        with live_server.client() as http:
            barrier.wait()
            return http.patch("/vms/raced", json={"memory": memory}, headers={"If-Match": etag}).status_code

    with ThreadPoolExecutor(writers) as pool:
        statuses = list(pool.map(write, range(200, 200 + writers)))
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}
    winner = 200 + statuses.index(200)
    with live_server.client() as http:
        assert http.get("/vms/raced").json()["spec"]["memory"] == winner


def test_the_if_match_recheck_under_the_claim_refuses_a_vm_changed_after_the_first_check(app, ts, client):
    """The window between the If-Match check and the operation's claim: the VM changes there (here, by a
    direct call), the operation re-checks once it holds the VM, fails as a task, and the client gets 412."""
    from toolstack.api.errors import StaleVersion, _classify
    from toolstack.api.etags import VMVersionGuard, etag, vm_version
    from toolstack.errors import OperationFailed

    uuid = client.post("/vms", json={"name": "window", "memory": 64}).json()["vm"]["uuid"]
    guard = VMVersionGuard(ts, uuid, etag(vm_version(ts, uuid)), "window")
    guard.check_before()  # passes: the client's ETag is current
    ts.set_resources(uuid, memory=128)  # ...and then someone else changes the VM
    head = ts.main.head

    def start(watch):  # the operation as the API runs it: the watch is its observer
        return ts.start(uuid, observer=watch)

    try:
        asyncio.run(app.state.api.jobs.run(start, wait=10, guard=guard))
    except OperationFailed as err:
        failure = err
    else:
        raise AssertionError("the stale write went through")
    assert isinstance(failure.cause, StaleVersion)
    status, body = _classify(failure)
    assert (status, body.error, body.task) == (412, "precondition_failed", failure.task)
    assert ts.main.head == head and ts.info(ts.vm(uuid)).state.value == "shutoff"
    assert client.get(f"/tasks/{failure.task}").json()["status"] == "failed"
