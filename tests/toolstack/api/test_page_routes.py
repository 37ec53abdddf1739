"""The routes the web page adds besides its files: a VM's files at a revision (what the rollback dialog
compares), and ``/docs``, Swagger UI from local files over the spec that needs the token."""

from __future__ import annotations

import json
import re

from tests.toolstack.api.conftest import TOKEN, create
from toolstack.api.routes.health import STATIC_DIR


def test_a_vms_files_are_read_at_main_or_at_any_older_revision(client):
    uuid = create(client, "web1")["vm"]["uuid"]
    created = client.get("/vms/web1/history").json()["items"][0]["commit"]
    client.patch("/vms/web1", json={"memory": 512})

    now = client.get("/vms/web1/files")
    assert now.status_code == 200
    body = now.json()
    assert body["uuid"] == uuid
    assert body["commit"] == client.get("/vms").headers["etag"].strip('"')
    assert set(body["files"]) == {"config", "desired"}
    assert json.loads(body["files"]["config"])["memory"] == 512
    assert body["files"]["desired"].strip() == "stopped"

    then = client.get(f"/vms/{uuid}/files", params={"rev": created}).json()
    assert then["commit"] == created
    assert json.loads(then["files"]["config"])["memory"] == 256


def test_a_deleted_vms_files_are_read_by_uuid_and_a_vm_not_there_yet_has_none(client):
    first = client.get("/history").json()["items"][-1]["commit"]  # init: before any VM
    uuid = create(client, "gone")["vm"]["uuid"]
    client.post("/vms/gone/disks", json={"source": "/var/lib/images/gone.img"})
    before_delete = client.get("/vms").headers["etag"].strip('"')
    assert client.delete("/vms/gone").status_code == 200

    assert client.get("/vms/gone/files").status_code == 404  # the name is free again
    assert client.get(f"/vms/{uuid}/files").json()["files"] == {}
    kept = client.get(f"/vms/{uuid}/files", params={"rev": before_delete}).json()["files"]
    assert set(kept) == {"config", "desired", "devices/disk0"}
    assert json.loads(kept["devices/disk0"])["source"] == "/var/lib/images/gone.img"
    assert client.get(f"/vms/{uuid}/files", params={"rev": first}).json()["files"] == {}


def test_the_files_route_needs_the_token_and_a_well_formed_known_revision(client, anon):
    create(client, "web1")
    assert anon.get("/vms/web1/files").status_code == 401
    bad = client.get("/vms/web1/files", params={"rev": "main/../../etc"})
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["loc"] == ["query", "rev"]
    assert client.get("/vms/web1/files", params={"rev": "0" * 40}).status_code == 404
    assert client.get("/vms/nothing-here/files").status_code == 404


def test_docs_is_a_page_without_secrets_whose_scripts_are_local_and_whose_spec_needs_the_token(anon):
    docs = anon.get("/docs")
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert TOKEN not in docs.text
    # The main page's policy: scripts and styles from this origin only (no CDN, nothing inline).
    assert docs.headers["content-security-policy"] == anon.get("/").headers["content-security-policy"]
    assets = re.findall(r'(?:href|src)="([^"]+)"', docs.text)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    for asset in assets:
        if asset.startswith("data:"):
            continue
        assert asset.startswith("/"), asset  # nothing from elsewhere
        if asset != "/":
            assert anon.get(asset).status_code == 200, asset
    assert anon.get("/openapi.json").status_code == 401
    # The page's own script reads the token from the tab's storage and sends it for the spec.
    script = anon.get("/static/docs.js").text
    assert "sessionStorage" in script and "Authorization" in script and "/openapi.json" in script


def test_the_swagger_ui_files_say_where_they_come_from():
    with open(f"{STATIC_DIR}/vendor/swagger-ui/SOURCE.md") as source:
        note = source.read()
    assert "swagger-ui-dist" in note and re.search(r"5\.\d+\.\d+", note)
    with open(f"{STATIC_DIR}/vendor/swagger-ui/LICENSE") as license_file:
        assert "Apache License" in license_file.read()


def test_the_files_route_is_in_the_spec(client):
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/vms/{vm}/files"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["vm", "rev"]
    assert "/docs" not in spec["paths"]
