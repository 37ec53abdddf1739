"""``GET /metrics`` scraped and parsed as Prometheus would, and ``serve --log-format json`` read back: each
line one JSON object carrying the request's user and the operation's task."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.toolstack.api.conftest import ROOT, start_server


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
