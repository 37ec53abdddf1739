"""``GET /metrics`` scraped and parsed as Prometheus would, and ``serve --log-format json`` read back: each
line one JSON object carrying the request's user and the operation's task."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

import drivers
from store import Store
from tests.toolstack.api.conftest import ROOT, start_server
from toolstack import layout
from toolstack.claims import Claims


def add_user(repo: Path, name: str, *options: str) -> str:
    command = [sys.executable, "-m", "toolstack.cli", "--repo", str(repo), "token", "add", name, *options]
    added = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=60)
    return added.stdout.strip()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_operations_by_kind_and_outcome_with_durations(tmp_path):
    server = start_server(tmp_path)
    try:
        with server.client() as client:
            assert httpx.get(f"{server.url}/metrics").status_code == 401
            assert client.post("/vms", json={"name": "web1", "memory": "256M"}).status_code == 201
            assert client.post("/vms/web1/start").status_code == 200
            again = client.post("/vms/web1/start")  # running already: the hypervisor refuses it
            assert again.status_code == 409 and again.json()["error"] == "operation_refused", again.text
            assert client.post("/reconcile", json={}).status_code == 200
            scraped = client.get("/metrics")
    finally:
        server.stop()
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    found = samples(scraped.text)
    assert found[("toolstack_operations_total", (("operation", "create"), ("outcome", "succeeded")))] == 1
    assert found[("toolstack_operations_total", (("operation", "start"), ("outcome", "succeeded")))] == 1
    assert found[("toolstack_operations_total", (("operation", "start"), ("outcome", "failed")))] == 1
    assert found[("toolstack_operation_duration_seconds_count", (("operation", "start"),))] == 2
    every = ("toolstack_operation_duration_seconds_bucket", (("le", "+Inf"), ("operation", "create")))
    assert found[every] == 1
    assert found[("toolstack_commits_total", ())] == 2
    assert found[("toolstack_merge_conflicts_total", ())] == 0
    assert found[("toolstack_busy_refusals_total", ())] == 0
    assert found[("toolstack_drift_found_total", ())] == 0
    assert found[("toolstack_reconcile_duration_seconds_count", ())] == 1


def test_drift_made_out_of_band_is_counted_by_the_reconcile_that_finds_it_not_by_its_dry_run(tmp_path):
    server = start_server(tmp_path)
    drift = ("toolstack_drift_found_total", ())
    try:
        with server.client() as client:
            for name in ("web1", "web2", "web3"):
                created = client.post("/vms", json={"name": name, "memory": "256M", "start": True})
                assert created.status_code == 201, created.text
            before = samples(client.get("/metrics").text)
            with drivers.open(f"sim://{tmp_path}/served.sim") as hypervisor:  # behind the toolstack's back
                for name in ("web1", "web2"):
                    hypervisor.destroy(client.get(f"/vms/{name}").json()["uuid"])
            planned = client.post("/reconcile", json={"dry_run": True}).json()
            assert len(planned["drift"]) == 2
            after_dry_run = samples(client.get("/metrics").text)
            applied = client.post("/reconcile", json={}).json()
            assert applied["applied"] is True and len(applied["drift"]) == 2
            after = samples(client.get("/metrics").text)
    finally:
        server.stop()
    assert before[drift] == after_dry_run[drift] == 0
    assert after[drift] == 2
    assert after[("toolstack_reconcile_duration_seconds_count", ())] == 1


def test_json_logs_carry_the_user_and_the_task_of_an_operation(tmp_path):
    server = start_server(tmp_path, "--log-format", "json")
    try:
        token = add_user(server.repo, "alice")
        with httpx.Client(base_url=server.url, timeout=30) as client:
            created = client.post(
                "/vms", json={"name": "web1", "memory": "256M"}, headers={"Authorization": f"Bearer {token}"}
            )
        assert created.status_code == 201, created.text
        task = created.json()["task"]["id"]
    finally:
        server.stop()
    lines = server.log.read_text().splitlines()
    announced, logged = lines[0], [json.loads(line) for line in lines[1:]]  # every line but the announcement
    assert announced.startswith("toolstack serve: ")
    finished = [line for line in logged if line["message"].startswith("task finished")]
    assert [(line["user"], line["task"], line["vm"], line["outcome"]) for line in finished] == [
        ("alice", task, "web1", "succeeded")
    ]
    assert any(line["message"].startswith("task started") and line["task"] == task for line in logged)
    access = [e for e in logged if e["logger"] == "uvicorn.access" and "POST /vms" in e["message"]]
    assert [line["user"] for line in access] == ["alice"]
    assert any(line["logger"] == "uvicorn.error" for line in logged)  # uvicorn's own lines are JSON too
    assert token not in server.log.read_text()


def slow_shutdown(client: httpx.Client, tmp_path: Path, name: str, seconds: float) -> tuple[str, str]:
    """A running VM whose guest ignores the power button, and a forced shutdown of it that takes ``seconds``
    (answered 202 at once): its uuid and the shutdown's task."""
    created = client.post("/vms", json={"name": name, "memory": "64M", "start": True})
    assert created.status_code == 201, created.text
    uuid = created.json()["vm"]["uuid"]
    with drivers.open(f"sim://{tmp_path}/served.sim") as hypervisor:  # the server's simulator, on disk
        hypervisor.oob_ignore_shutdown(uuid)
    shutdown = client.post(
        f"/vms/{name}/shutdown", json={"timeout": seconds, "force": True}, params={"wait": 0}
    )
    assert shutdown.status_code == 202, shutdown.text
    return uuid, shutdown.json()["task"]["id"]


MERGE_CONFLICTS = ("toolstack_merge_conflicts_total", ())


def finished(client: httpx.Client, task: str) -> dict:
    deadline = time.monotonic() + 30
    while (record := client.get(f"/tasks/{task}").json())["status"] == "running":
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    return record


def test_metrics_count_busy_refusals_and_merge_conflicts(tmp_path):
    server = start_server(tmp_path)
    try:
        with server.client() as client:
            _, running = slow_shutdown(client, tmp_path, "busy", 1.5)
            for action in ("start", "pause"):  # two refusals while the shutdown holds the VM
                refused = client.post(f"/vms/busy/{action}")
                assert (refused.status_code, refused.json()["error"]) == (409, "busy"), refused.text
            assert finished(client, running)["status"] == "succeeded"

            uuid, contested = slow_shutdown(client, tmp_path, "contested", 1.0)
            with Store.open(str(server.repo)) as store:  # a GitOps edit lands on main while it runs
                deadline = time.monotonic() + 10
                while uuid not in Claims(store).busy():
                    assert time.monotonic() < deadline, "the shutdown never held the VM"
                    time.sleep(0.01)
                with store.branch(layout.MAIN).transaction(
                    message="gitops: keep it paused", author="bob"
                ) as tx:
                    tx.set(layout.desired_path(uuid), b"paused\n")
            record = finished(client, contested)
            assert record["status"] != "succeeded", record
            # The task record says "failed" a moment before the runner counts it (its outcome is counted
            # as the operation returns): scrape until the count is there.
            deadline = time.monotonic() + 10
            while (found := samples(client.get("/metrics").text))[MERGE_CONFLICTS] == 0:
                assert time.monotonic() < deadline, "the conflict was never counted"
                time.sleep(0.05)
    finally:
        server.stop()
    operations = {
        labels: value for (name, labels), value in found.items() if name == "toolstack_operations_total"
    }
    assert operations == {
        (("operation", "create"), ("outcome", "succeeded")): 2,
        (("operation", "start"), ("outcome", "busy")): 1,
        (("operation", "pause"), ("outcome", "busy")): 1,
        (("operation", "shutdown"), ("outcome", "succeeded")): 1,
        (("operation", "shutdown"), ("outcome", "conflict")): 1,
    }
    assert found[("toolstack_busy_refusals_total", ())] == 2
    assert found[MERGE_CONFLICTS] == 1
    assert found[("toolstack_commits_total", ())] == 3  # the creates (each starting its VM) and a shutdown
