"""A reconcile or rollback that would stop or undefine domains needs ``confirm: true`` (the CLI's --yes):
without it the API answers 409 ``confirmation_required`` with the plan, and changes nothing. Dry runs and
plans that only define or start never need it."""

from __future__ import annotations

from tests.toolstack.api.conftest import create
from toolstack import layout


def test_a_destructive_reconcile_needs_confirm_and_is_refused_with_the_plan(client, ts):
    create(client, "web1", start=True)
    create(client, "db1", start=True)
    uuid = ts.vm("web1").uuid
    with ts.main.transaction(message="a GitOps edit: stop web1", author="Bob <bob@example.org>") as tx:
        tx.set(layout.desired_path(uuid), b"stopped\n")
    head = ts.main.head

    assert client.post("/reconcile", json={"dry_run": True}).status_code == 200  # a dry run is never refused
    refused = client.post("/reconcile")

    assert refused.status_code == 409
    body = refused.json()
    assert body["error"] == "confirmation_required" and "stop web1" in body["message"]
    assert [(a["kind"], a["name"]) for a in body["plan"]["actions"]] == [("stop", "web1")]
    assert body["plan"]["applied"] is False
    assert ts.main.head == head and client.get("/vms/web1").json()["state"] == "running"

    done = client.post("/reconcile", json={"confirm": True})

    assert done.status_code == 200 and done.json()["applied"] is True
    assert client.get("/vms/web1").json()["state"] == "shutoff"
    assert client.get("/vms/db1").json()["state"] == "running"


def test_a_rollback_that_deletes_a_vm_needs_confirm_and_writes_nothing_without_it(client, ts):
    create(client, "web1", start=True)
    before = ts.main.head
    create(client, "db1", start=True)
    head = ts.main.head

    refused = client.post("/rollback", json={"commit": before})

    assert refused.status_code == 409 and refused.json()["error"] == "confirmation_required"
    assert {(a["kind"], a["name"]) for a in refused.json()["plan"]["actions"]} == {
        ("stop", "db1"),
        ("undefine", "db1"),
    }
    assert ts.main.head == head and client.get("/vms/db1").json()["state"] == "running"

    done = client.post("/rollback", json={"commit": before, "confirm": True})

    assert done.status_code == 200 and done.json()["applied"] is True
    assert client.get("/vms/db1").status_code == 404
    assert ts.driver.list() and {i.name for i in ts.driver.list()} == {"web1"}


def test_a_plan_that_only_starts_needs_no_confirm(client, ts):
    create(client, "web1", start=True)
    ts.driver.destroy(ts.vm("web1").uuid)  # stopped outside the toolstack

    done = client.post("/reconcile")

    assert done.status_code == 200 and [a["kind"] for a in done.json()["actions"]] == ["start"]
