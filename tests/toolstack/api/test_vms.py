"""VMs over HTTP: list, get, create, update, delete; ETags and If-Match; 404, 409 and 422 naming the field."""

from __future__ import annotations

import pytest

from tests.toolstack.api.conftest import create


def test_create_answers_201_with_the_task_the_vm_its_location_and_etag(client, ts):
    body = create(client, "web1", vcpus=2, disks=["/srv/web1.img"], nics=["default"])
    vm, task = body["vm"], body["task"]
    assert (vm["name"], vm["desired"], vm["state"]) == ("web1", "stopped", "shutoff")
    assert vm["spec"]["memory"] == 256 and vm["spec"]["vcpus"] == 2
    assert [d["id"] for d in vm["spec"]["disks"]] == ["disk0"]
    assert vm["spec"]["nics"][0]["network"] == "default"
    assert (task["operation"], task["status"], task["vm"]) == ("create", "succeeded", vm["uuid"])
    assert task["who"] == "Alice <alice@example.org>"
    # The VM is what the toolstack itself reads back.
    assert ts.vm("web1").uuid == vm["uuid"]


def test_create_with_start_runs_one_task_and_answers_with_the_running_vm(client):
    body = create(client, "quick", start=True)
    assert body["vm"]["state"] == "running"
    assert body["vm"]["desired"] == "running"
    assert (body["task"]["operation"], body["task"]["detail"]) == ("create", {"start": True})
    history = client.get("/vms/quick/history").json()["items"]
    assert [h["message"].split(":")[0] for h in history] == ["vm create quick"]


def test_get_by_name_or_uuid_with_the_etag_of_the_commit_where_it_last_changed(client, ts):
    uuid = create(client, "web1")["vm"]["uuid"]
    by_name = client.get("/vms/web1")
    by_uuid = client.get(f"/vms/{uuid}")
    assert by_name.status_code == by_uuid.status_code == 200
    assert by_name.json() == by_uuid.json()
    assert by_name.headers["etag"] == f'"{ts.log(uuid, limit=1)[0].commit}"'
    client.post("/vms", json={"name": "other", "memory": 64})
    assert client.get("/vms/web1").headers["etag"] == by_name.headers["etag"]  # another VM changed, not this
    client.post("/vms/web1/start")
    assert client.get("/vms/web1").headers["etag"] != by_name.headers["etag"]


def test_list_gives_every_vm_by_name_with_its_live_state_and_mains_head_as_etag(client, ts):
    create(client, "b")
    create(client, "a", start=True)
    response = client.get("/vms")
    assert [(v["name"], v["state"]) for v in response.json()] == [("a", "running"), ("b", "shutoff")]
    assert response.headers["etag"] == f'"{ts.main.head}"'


def test_a_missing_vm_is_404_on_every_vm_route(client):
    assert client.get("/vms/ghost").json()["error"] == "not_found"
    for method, path in [
        ("GET", "/vms/ghost"),
        ("PATCH", "/vms/ghost"),
        ("DELETE", "/vms/ghost"),
        ("POST", "/vms/ghost/start"),
        ("POST", "/vms/ghost/disks"),
        ("DELETE", "/vms/ghost/devices/disk0"),
        ("GET", "/vms/ghost/history"),
    ]:
        body = (
            {"memory": 64} if method == "PATCH" else {"source": "/a.img"} if path.endswith("disks") else None
        )
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
        assert "ghost" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"name": "bad/name", "memory": "1G"}, "name", "invalid domain name"),
        ({"name": "12345", "memory": "1G"}, "name", "all-digit"),
        ({"name": "ok", "memory": "12XB"}, "memory", "invalid memory size"),
        ({"name": "ok", "memory": "1G", "vcpus": 0}, "vcpus", "between 1 and 512"),
        ({"name": "ok", "memory": "1G", "vcpus": "many"}, "vcpus", "integer"),
        ({"name": "ok"}, "memory", "Field required"),
        ({"name": "ok", "memory": "1G", "colour": "red"}, "colour", "Extra inputs"),
        (
            {"name": "ok", "memory": "1G", "on_reboot": "coredump-restart"},
            "on_reboot",
            "only valid for on_crash",
        ),
        (
            {"name": "ok", "memory": "1G", "nics": [{"id": "n", "mac": "01:00:00:00:00:01"}]},
            "nics",
            "multicast",
        ),
    ],
)
def test_invalid_input_is_422_naming_the_field_and_writes_nothing(client, ts, body, field, words):
    head = ts.main.head
    response = client.post("/vms", json=body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "invalid_request"
    assert any(f["loc"][:2] == ["body", field] and words in f["msg"] for f in error["fields"]), error
    assert field in error["message"]
    assert ts.main.head == head


def test_a_cross_field_error_found_by_the_toolstack_is_422_with_its_message(client):
    response = client.post("/vms", json={"name": "ok", "memory": "1G", "max_memory": "512M"})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert "max_memory" in response.json()["message"]


def test_a_second_vm_of_the_same_name_is_409_exists(client):
    create(client, "web1")
    response = client.post("/vms", json={"name": "web1", "memory": 64})
    assert response.status_code == 409
    assert response.json()["error"] == "exists"


def test_update_changes_memory_and_vcpus_and_needs_one_of_them(client):
    create(client, "web1", max_vcpus=4)
    response = client.patch("/vms/web1", json={"memory": "1G", "vcpus": 3})
    assert response.status_code == 200
    spec = response.json()["vm"]["spec"]
    assert (spec["memory"], spec["vcpus"]) == (1024, 3)
    assert response.json()["task"]["detail"] == {"changes": {"memory": 1024, "vcpus": 3}}
    assert response.headers["etag"] == client.get("/vms/web1").headers["etag"]
    empty = client.patch("/vms/web1", json={})
    assert empty.status_code == 422
    assert "memory and/or vcpus" in empty.json()["message"]
    assert client.patch("/vms/web1", json={"memory": "lots"}).json()["fields"][0]["loc"] == ["body", "memory"]


def test_if_match_with_the_current_etag_writes_and_a_stale_one_gets_412(client, ts):
    create(client, "web1")
    etag = client.get("/vms/web1").headers["etag"]
    first = client.patch("/vms/web1", json={"memory": 512}, headers={"If-Match": etag})
    assert first.status_code == 200
    head = ts.main.head
    stale = client.patch("/vms/web1", json={"memory": 768}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert stale.json()["error"] == "precondition_failed"
    assert ts.main.head == head and ts.vm("web1").spec.memory == 512
    for action in ("/vms/web1/start", "/vms/web1/disks"):
        body = {"source": "/srv/d.img"} if action.endswith("disks") else None
        assert client.post(action, json=body, headers={"If-Match": etag}).status_code == 412
    assert client.delete("/vms/web1", headers={"If-Match": etag}).status_code == 412
    assert client.patch("/vms/web1", json={"memory": 768}, headers={"If-Match": "*"}).status_code == 200
    weak = client.get("/vms/web1").headers["etag"]
    assert client.post("/vms/web1/start", headers={"If-Match": f"W/{weak}"}).status_code == 412
    assert client.post("/vms/web1/start", headers={"If-Match": f'"nope", {weak}'}).status_code == 200


def test_delete_removes_the_vm_but_its_history_stays_readable_by_uuid(client):
    uuid = create(client, "gone", start=True)["vm"]["uuid"]
    response = client.delete("/vms/gone")
    assert response.status_code == 200
    assert response.json()["task"]["operation"] == "delete"
    assert response.json()["vm"] is None
    assert client.get("/vms/gone").status_code == 404
    history = client.get(f"/vms/{uuid}/history").json()["items"]
    assert [h["message"].split(":")[0] for h in history] == ["vm delete gone", "vm create gone"]


@pytest.mark.parametrize("if_match", ["", "   ", '"abc" "def"', '"unterminated', "a b"])
def test_an_empty_or_malformed_if_match_is_400_naming_the_header_and_writes_nothing(client, ts, if_match):
    """RFC 9110's list grammar would read an empty If-Match as an empty list matching nothing (412), but a
    412 tells the client to re-read and retry: with the same empty value, forever. It is a client's bug (an
    unset ETag variable), answered 400 like any malformed header."""
    create(client, "web1")
    head = ts.main.head
    for response in (
        client.patch("/vms/web1", json={"memory": 512}, headers={"If-Match": if_match}),
        client.post("/vms/web1/start", headers={"If-Match": if_match}),
        client.post("/rollback", json={"commit": head}, headers={"If-Match": if_match}),
    ):
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["error"] == "invalid_header"
        assert error["fields"][0]["loc"] == ["header", "if-match"]
    assert ts.main.head == head


def test_if_match_takes_star_quoted_weak_and_bare_tags_with_spaces_around_commas(client):
    create(client, "web1")
    started = client.post(
        "/vms/web1/start", headers={"If-Match": f'W/"x" ,  {client.get("/vms/web1").headers["etag"]}'}
    )
    assert started.status_code == 200
    bare = started.headers["etag"].strip('"')
    assert client.post("/vms/web1/pause", headers={"If-Match": bare}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/reconcile", {"adopt": 0}, "adopt"),
        ("/reconcile", {"dry_run": "yes"}, "dry_run"),
        ("/vms", {"name": "flag", "memory": 64, "start": 1}, "start"),
        ("/vms/web1/shutdown", {"force": "true"}, "force"),
        ("/vms/web1/disks", {"source": "/srv/d.img", "readonly": 1}, "readonly"),
        ("/rollback", {"commit": "main", "dry_run": 0}, "dry_run"),
        (
            "/vms",
            {
                "name": "d",
                "memory": 64,
                "disks": [{"id": "d", "source": "/d", "target": "vda", "readonly": 0}],
            },
            "disks",
        ),
    ],
)
def test_a_flag_must_be_a_json_boolean_not_a_number_or_text(client, ts, path, body, field):
    create(client, "web1")
    head = ts.main.head
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    locations = [f["loc"] for f in response.json()["fields"]]
    # A disk given whole: its readonly flag, named inside it.
    assert locations == (
        [["body", "disks", 0, "disk", "readonly"]] if field == "disks" else [["body", field]]
    )
    assert ts.main.head == head


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"max_vcpus": 1, "vcpus": 2}, "max_vcpus (1) is below vcpus (2)"),
        (
            {
                "disks": [
                    {"id": "d", "source": "/a", "target": "vda"},
                    {"id": "d", "source": "/b", "target": "vdb"},
                ]
            },
            "duplicate device id 'd'",
        ),
        (
            {
                "disks": [
                    {"id": "a", "source": "/a", "target": "vda"},
                    {"id": "b", "source": "/b", "target": "vda"},
                ]
            },
            "duplicate disk target dev 'vda'",
        ),
        (
            {
                "nics": [
                    {"id": "a", "mac": "52:54:00:00:00:01", "network": "default"},
                    {"id": "b", "mac": "52-54-00-00-00-01", "network": "default"},
                ]
            },
            "duplicate nic MAC address",
        ),
    ],
)
def test_the_rules_between_fields_the_schema_cannot_state_are_422_naming_them(client, ts, body, words):
    head = ts.main.head
    response = client.post("/vms", json={"name": "x", "memory": 64, **body})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input" and words in response.json()["message"]
    assert ts.main.head == head


def test_devices_given_whole_are_checked_with_the_drivers_messages(client, ts):
    head = ts.main.head
    response = client.post(
        "/vms", json={"name": "x", "memory": 64, "nics": [{"id": "", "mac": "", "network": "default"}]}
    )
    assert response.status_code == 422, response.text
    fields = {tuple(f["loc"]): f["msg"] for f in response.json()["fields"]}
    assert "invalid device id ''" in fields["body", "nics", 0, "nic", "id"]
    assert "invalid MAC address ''" in fields["body", "nics", 0, "nic", "mac"]
    for disks in (["relative.img"], ["/a,b.img"]):
        response = client.post("/vms", json={"name": "x", "memory": 64, "disks": disks})
        assert response.status_code == 422, response.text
        assert response.json()["fields"][0]["loc"][:3] == ["body", "disks", 0]
    assert ts.main.head == head


def test_paths_and_network_names_get_the_ids_targets_and_macs_the_whole_devices_leave_free(client):
    whole_disk = {"id": "disk0", "source": "/given.img", "target": "vda", "readonly": True}
    whole_nic = {"id": "nic0", "mac": "52:54:00:00:00:01", "bridge": "br0"}
    vm = create(client, "mixed", disks=["/a.img", whole_disk], nics=[whole_nic, "default"])["vm"]
    disks = {(d["id"], d["target"], d["readonly"]) for d in vm["spec"]["disks"]}
    assert disks == {("disk1", "vdb", False), ("disk0", "vda", True)}
    assert sorted(n["id"] for n in vm["spec"]["nics"]) == ["nic0", "nic1"]


def test_a_vm_takes_as_many_disks_as_the_schema_allows_named_past_vdz(client):
    vm = create(client, "many", disks=[f"/d{i}.img" for i in range(64)])["vm"]
    targets = [d["target"] for d in vm["spec"]["disks"]]
    assert targets[:2] + targets[25:28] + targets[-1:] == ["vda", "vdb", "vdz", "vdaa", "vdab", "vdbl"]


def test_the_openapi_schema_declares_the_constraints_the_server_enforces(client):
    """A client that builds requests from the spec must not be refused for what the spec did not say."""
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    create_fields = schemas["VMCreate"]["properties"]
    assert create_fields["name"]["pattern"] and create_fields["name"]["maxLength"] == 64
    integer, text = create_fields["memory"]["anyOf"]
    assert (integer["exclusiveMinimum"], text["type"]) == (0, "string") and text["pattern"]
    assert create_fields["vcpus"]["minimum"] == 1
    assert schemas["DiskAttach"]["properties"]["source"]["pattern"].startswith("^/")
    assert schemas["VMUpdate"]["minProperties"] == 1
    assert schemas["NicAttach"]["oneOf"] == [{"required": ["network"]}, {"required": ["bridge"]}]
    # Devices given whole inside POST /vms: the drivers' own models declare their constraints.
    disk, nic = schemas["DiskIn"]["properties"], schemas["Nic"]
    assert disk["id"]["pattern"] and disk["source"]["pattern"].startswith("^/") and disk["target"]["pattern"]
    assert disk["readonly"]["type"] == "boolean"
    assert nic["properties"]["mac"]["pattern"] and len(nic["oneOf"]) == 2
    assert len(schemas["Boot"]["oneOf"]) == 2
    text_disk = create_fields["disks"]["items"]["oneOf"][0]
    assert text_disk["pattern"].startswith("^/")
    metadata = create_fields["metadata"]
    assert metadata["propertyNames"]["minLength"] == 1 and metadata["additionalProperties"]["pattern"]
    (rev,) = spec["paths"]["/commits/{rev}"]["get"]["parameters"]
    assert rev["schema"]["pattern"] and rev["schema"]["not"]["pattern"]
    if_match = next(p for p in spec["paths"]["/vms/{vm}"]["patch"]["parameters"] if p["name"] == "if-match")
    assert if_match["schema"]["anyOf"][0]["pattern"]


def test_a_vm_is_read_on_the_event_loop_only_for_a_driver_whose_reads_never_wait(tmp_path):
    # A hung libvirtd must stall one worker thread, never the server: only the simulator's reads (memory
    # and local files, no lock held across I/O) may run on the event loop.
    from drivers.libvirt.driver import LibvirtDriver
    from drivers.sim.driver import SimDriver
    from toolstack.ops import Toolstack

    assert SimDriver.reads_never_wait and not LibvirtDriver.reads_never_wait
    ts = Toolstack.init(str(tmp_path / "pool.git"), f"sim://{tmp_path}/sim", name="pool")
    try:
        assert ts.driver.reads_never_wait, "the ownership guard reports the wrapped driver's"
    finally:
        ts.close()
