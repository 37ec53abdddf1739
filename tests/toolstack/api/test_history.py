"""History, commits with their diffs, branches, rollback and reconcile (each with a dry-run plan)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from tests.conftest import git
from tests.toolstack.api.conftest import create
from tests.toolstack.conftest import push_memory_edit_as_ada
from toolstack import layout
from toolstack.sync import pull

ADA = "Ada Pusher <ada@example.org>"


def subjects(page: dict) -> list[str]:
    return [item["message"].split(":")[0] for item in page["items"]]


def test_history_is_paged_newest_first_globally_and_per_vm(client):
    create(client, "a")
    create(client, "b")
    client.post("/vms/a/start")
    client.patch("/vms/a", json={"memory": 512})
    everything = client.get("/history").json()
    assert subjects(everything)[:4] == ["vm set a", "vm start a", "vm create b", "vm create a"]
    assert everything["next_offset"] is None
    first = client.get("/vms/a/history", params={"limit": 2}).json()
    assert subjects(first) == ["vm set a", "vm start a"] and first["next_offset"] == 2
    second = client.get("/vms/a/history", params={"limit": 2, "offset": 2}).json()
    assert subjects(second) == ["vm create a"] and second["next_offset"] is None
    entry = first["items"][0]
    assert entry["author"] == "Alice <alice@example.org>"
    assert entry["vms"] == [client.get("/vms/a").json()["uuid"]]
    assert client.get("/history", params={"limit": 1001}).status_code == 422


def test_a_commit_shows_what_it_changed_as_unified_diffs(client):
    uuid = create(client, "web1")["vm"]["uuid"]
    client.patch("/vms/web1", json={"memory": 512})
    step = client.get("/vms/web1/history", params={"limit": 1}).json()["items"][0]
    response = client.get(f"/commits/{step['commit']}")
    assert response.status_code == 200
    assert response.headers["etag"] == f'"{step["commit"]}"'
    commit = response.json()
    assert commit["message"].startswith("vm set web1")
    assert len(commit["parents"]) == 2  # every operation is a merge of its task branch
    changes = {c["path"]: c for c in commit["changes"]}
    config = changes[layout.config_path(uuid)]
    assert config["kind"] == "changed"
    assert json.loads(config["old"])["memory"] == 256 and json.loads(config["new"])["memory"] == 512
    assert '-  "memory": 256,' in config["diff"] and '+  "memory": 512,' in config["diff"]
    assert any(path.startswith("tasks/") and c["kind"] == "added" for path, c in changes.items())
    by_name = client.get("/commits/main~1").json()
    assert by_name["commit"] == commit["parents"][0]
    assert client.get("/commits/0123456789abcdef0123456789abcdef01234567").status_code == 404
    assert client.get("/commits/no-such-branch").json()["error"] == "not_found"


def test_branches_list_main_and_failed_tasks(client):
    create(client, "web1")
    failed = client.post("/vms/web1/pause").json()["task"]
    names = {b["name"]: b["head"] for b in client.get("/branches").json()}
    assert names["main"] == client.get("/vms").headers["etag"].strip('"')
    assert f"failed-tasks/{failed}" in names


def test_rollback_dry_run_plans_and_changes_nothing_then_rollback_restores_and_reconciles(client, ts):
    create(client, "web1")
    created_at = client.get("/vms/web1/history").json()["items"][0]["commit"]
    client.post("/vms/web1/start")
    client.patch("/vms/web1", json={"memory": 512})
    head = ts.main.head
    plan = client.post("/rollback", json={"commit": created_at, "vm": "web1", "dry_run": True})
    assert plan.status_code == 200
    body = plan.json()
    assert body["dry_run"] is True and body["applied"] is False
    assert [(a["kind"], a["name"]) for a in body["actions"]] == [("update", "web1"), ("stop", "web1")]
    assert body["target"] == created_at and body["head"] == head
    assert ts.main.head == head and client.get("/vms/web1").json()["state"] == "running"

    # It stops a running VM: it takes confirm (test_confirm.py: without it, 409 and nothing written).
    done = client.post("/rollback", json={"commit": created_at, "vm": "web1", "confirm": True})
    assert done.status_code == 200
    assert done.json()["applied"] is True
    assert done.json()["head"] != head
    vm = client.get("/vms/web1").json()
    assert (vm["state"], vm["desired"], vm["spec"]["memory"]) == ("shutoff", "stopped", 256)
    assert subjects(client.get("/history", params={"limit": 2}).json())[0].startswith("reconcile")


def test_rollback_if_match_and_errors(client):
    create(client, "web1")
    etag = client.get("/vms/web1").headers["etag"]
    main_etag = client.get("/vms").headers["etag"]
    client.post("/vms/web1/start")
    target = etag.strip('"')
    stale = client.post("/rollback", json={"commit": target, "vm": "web1"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    stale_all = client.post("/rollback", json={"commit": target}, headers={"If-Match": main_etag})
    assert stale_all.status_code == 412
    current = client.get("/vms/web1").headers["etag"]
    fresh = client.post(
        "/rollback", json={"commit": target, "vm": "web1", "confirm": True}, headers={"If-Match": current}
    )
    assert fresh.status_code == 200
    assert client.post("/rollback", json={"commit": "f" * 40}).status_code == 404
    assert client.post("/rollback", json={}).json()["fields"][0]["loc"] == ["body", "commit"]


def test_reconcile_records_drift_and_repairs_it_with_a_dry_run_first(client, ts):
    create(client, "web1", start=True)
    ts.driver.destroy(ts.vm("web1").uuid)  # stopped outside the toolstack
    plan = client.post("/reconcile", json={"dry_run": True}).json()
    assert plan["dry_run"] is True
    assert [(a["kind"], a["name"]) for a in plan["actions"]] == [("start", "web1")]
    assert "changed outside the toolstack" in plan["drift"][0]
    assert client.get("/vms/web1").json()["state"] == "shutoff"
    done = client.post("/reconcile").json()
    assert done["applied"] is True and done["errors"] == []
    assert client.get("/vms/web1").json()["state"] == "running"
    messages = [item["message"] for item in client.get("/history", params={"limit": 2}).json()["items"]]
    assert messages[0].startswith("reconcile: start web1") and messages[1].startswith("drift:")
    assert client.post("/reconcile", json={"dry_run": True}).json()["actions"] == []


def test_a_vms_history_holds_its_drift_and_the_reconcile_that_repaired_it_and_no_other_vms(client, ts):
    create(client, "web1", start=True)
    create(client, "web2", start=True)
    ts.driver.destroy(ts.vm("web1").uuid)  # stopped outside the toolstack
    assert client.post("/reconcile").json()["applied"] is True
    web1 = client.get("/vms/web1/history").json()["items"]
    assert subjects({"items": web1}) == ["reconcile", "drift", "vm create web1"]
    reconciled, drifted = web1[0], web1[1]
    uuid = ts.vm("web1").uuid
    assert reconciled["vms"] == [uuid] and "start web1" in reconciled["message"]
    assert uuid in drifted["vms"] and "web1" in drifted["message"]
    assert reconciled["author"] == drifted["author"] == "Alice <alice@example.org>"
    web2 = client.get("/vms/web2/history").json()["items"]
    assert subjects({"items": web2}) == ["vm create web2"], "web2 did not drift"


def test_reconcile_adopts_unknown_domains_only_when_asked(client, ts):
    from drivers import DomainSpec

    ts.driver.oob_create(DomainSpec(uuid="6b0f4c3e-0000-4000-8000-000000000001", name="stray", memory=64))
    assert "stray" in client.post("/reconcile", json={"dry_run": True}).json()["unknown"][0]
    adopted = client.post("/reconcile", json={"adopt": True}).json()
    assert [(a["kind"], a["name"]) for a in adopted["actions"]] == [("adopt", "stray")]
    assert client.get("/vms/stray").json()["state"] == "running"
    assert ts.main.get(layout.name_path("stray")) is not None


def test_revisions_that_would_read_outside_the_repository_are_refused_with_422(client):
    for rev in ("../../../../etc/hostname", "refs/../../config", "a" * 300, "main:README"):
        response = client.get(f"/commits/{quote(rev, safe='')}")  # encoded: the client must not normalise
        assert response.status_code == 422, (rev, response.text)
        assert response.json()["fields"][0]["loc"] == ["path", "rev"]
    assert client.post("/rollback", json={"commit": "../../x"}).json()["fields"][0]["loc"] == [
        "body",
        "commit",
    ]
    failed_branch = client.get("/commits/main").json()["commit"]
    assert client.get("/commits/refs/heads/main").json()["commit"] == failed_branch


def edit_pushed_elsewhere(repo: Path, uuid: str, tmp_path: Path, memory: int) -> Path:
    """Ada sets the VM's memory in her clone of a central copy of ``repo`` and pushes it there (a GitOps
    edit); returns the central repository, from which a pull merges her edit."""
    central, work = tmp_path / "central.git", tmp_path / "ada"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(central))
    git(tmp_path, "clone", "-q", "-b", "main", str(central), str(work))
    push_memory_edit_as_ada(work, uuid, memory)
    return central


def test_a_gitops_merge_names_who_edited_the_vm_and_who_merged_it(client, ts, tmp_path):
    uuid = create(client, "web1")["vm"]["uuid"]
    create(client, "web2")
    central = edit_pushed_elsewhere(Path(ts.store.path), uuid, tmp_path, 512)
    assert client.patch("/vms/web2", json={"memory": 128}).status_code == 200  # meanwhile, here
    pull(ts, "origin", url=str(central))  # a merge, by the toolstack's operator, Alice
    web1 = client.get("/vms/web1/history").json()["items"]
    [merge] = [entry for entry in web1 if entry["message"].startswith("Merge")]
    assert (merge["edited_by"], merge["author"]) == ([ADA], "Alice <alice@example.org>")
    assert all(entry["edited_by"] == [] for entry in web1 if entry is not merge)
    everything = {entry["commit"]: entry["edited_by"] for entry in client.get("/history").json()["items"]}
    assert everything[merge["commit"]] == [ADA]
    web2 = client.get("/vms/web2/history").json()["items"]
    assert merge["commit"] not in [entry["commit"] for entry in web2]  # Ada did not edit web2
