"""Security: a bearer token on every route but /health and the page, a token file only its owner can read,
a body size limit, loopback by default, and a token that never reaches the logs."""

from __future__ import annotations

import os
import re
import stat

import httpx
import pytest

from tests.toolstack.api.conftest import TOKEN, start_server
from toolstack.api.auth import TokenFileError, default_token_file, load_or_create_token

PROTECTED = [
    ("GET", "/vms"),
    ("POST", "/vms"),
    ("GET", "/vms/x"),
    ("PATCH", "/vms/x"),
    ("DELETE", "/vms/x"),
    ("POST", "/vms/x/start"),
    ("POST", "/vms/x/shutdown"),
    ("POST", "/vms/x/disks"),
    ("DELETE", "/vms/x/devices/d"),
    ("GET", "/vms/x/history"),
    ("GET", "/tasks"),
    ("GET", "/tasks/t"),
    ("GET", "/history"),
    ("GET", "/commits/main"),
    ("GET", "/branches"),
    ("POST", "/rollback"),
    ("POST", "/reconcile"),
    ("GET", "/events?follow=false"),
    ("GET", "/openapi.json"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_route_needs_the_token_401_without_403_with_a_wrong_one(anon, method, path):
    missing = anon.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized"
    wrong = anon.request(method, path, headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "forbidden"
    other_scheme = anon.request(method, path, headers={"Authorization": f"Basic {TOKEN}"})
    assert other_scheme.status_code == 401


def test_every_route_in_the_openapi_spec_but_health_refuses_a_request_without_the_token(client, anon):
    """A new route cannot slip in without the token check: every operation of the spec is tried."""
    spec = client.get("/openapi.json").json()
    tried = 0
    for path, operations in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in operations:
            status = anon.request(method.upper(), concrete, params={"follow": "false"}).status_code
            assert status == (200 if path == "/health" else 401), (method, path)
            tried += 1
    assert tried >= 24


def test_health_and_the_page_need_no_token_and_say_nothing_secret(anon):
    assert anon.get("/health").json() == {"status": "ok"}
    page = anon.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "git-toolstack" in page.text
    assert TOKEN not in page.text
    script = anon.get("/static/app.js")
    assert script.status_code == 200
    assert "Authorization" in script.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")


def test_a_request_body_over_the_limit_gets_413_by_length_or_by_streaming(client):
    big = {"name": "big", "memory": "64M", "metadata": {"k": "x" * 20_000}}
    response = client.post("/vms", json=big)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"

    def chunks():
        for _ in range(20):
            yield b"x" * 1024

    streamed = client.post("/vms", content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert client.get("/vms").json() == []


def test_the_token_file_is_created_once_mode_0600_and_reused(tmp_path):
    path = str(tmp_path / "api-token")
    token, created = load_or_create_token(path)
    assert created and len(token) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again, created_again = load_or_create_token(path)
    assert (again, created_again) == (token, False)
    assert default_token_file(str(tmp_path / "toolstack.git")) == str(tmp_path / "toolstack.api-token")


def test_a_token_file_others_can_read_or_an_empty_one_is_refused(tmp_path):
    path = tmp_path / "api-token"
    path.write_text("a-long-enough-token-value\n")
    os.chmod(path, 0o644)
    with pytest.raises(TokenFileError, match="chmod 600"):
        load_or_create_token(str(path))
    os.chmod(path, 0o600)
    path.write_text("short\n")
    with pytest.raises(TokenFileError, match="no usable token"):
        load_or_create_token(str(path))


def test_the_server_binds_loopback_writes_a_private_token_and_never_logs_it(tmp_path):
    server = start_server(tmp_path)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert stat.S_IMODE(os.stat(server.token_file).st_mode) == 0o600
        with server.client() as http:
            assert http.post("/vms", json={"name": "logged", "memory": "64M"}).status_code == 201
            assert http.get("/vms/logged").status_code == 200
            assert http.get("/vms/nope").status_code == 404
        wrong = "wrong-" + server.token[::-1]
        assert httpx.get(f"{server.url}/vms", headers={"Authorization": f"Bearer {wrong}"}).status_code == 403
    finally:
        server.stop()
    log = server.log.read_text()
    assert "GET /vms/logged" in log  # the access log is on...
    assert server.token not in log  # ...and holds neither the token
    assert wrong not in log  # nor a wrong one
    assert str(server.token_file) in log  # only the file's path is printed


def test_a_world_readable_token_file_stops_the_server_with_a_clear_error(tmp_path):
    token_file = tmp_path / "served.api-token"
    token_file.write_text("a-long-enough-token-value\n")
    os.chmod(token_file, 0o644)
    with pytest.raises(AssertionError, match="chmod 600"):
        start_server(tmp_path)


def test_a_symlinked_token_file_is_refused_even_if_its_target_is_private(tmp_path):
    """As ssh refuses a key file it cannot trust: the link could lead to another user's file, or be
    switched to one between the checks and the read."""
    target = tmp_path / "real-token"
    target.write_text("a-long-enough-token-value\n")
    os.chmod(target, 0o600)
    link = tmp_path / "api-token"
    link.symlink_to(target)
    with pytest.raises(TokenFileError, match="symbolic link"):
        load_or_create_token(str(link))
    dangling = tmp_path / "dangling-token"
    dangling.symlink_to(tmp_path / "not-yet")
    with pytest.raises(TokenFileError, match="symbolic link"):
        load_or_create_token(str(dangling))
    assert not (tmp_path / "not-yet").exists()  # no token was written through the link


def test_a_symlinked_token_file_stops_the_server_with_a_clear_error(tmp_path):
    target = tmp_path / "real-token"
    target.write_text("a-long-enough-token-value\n")
    os.chmod(target, 0o600)
    (tmp_path / "served.api-token").symlink_to(target)
    with pytest.raises(AssertionError, match="symbolic link"):
        start_server(tmp_path)


def test_a_token_sent_in_the_query_string_never_reaches_the_access_log(tmp_path):
    """The API reads the token from the header only, but a client may put it in the URL: the access log
    (which shows each request's path and query) keeps the request but not the secret."""
    server = start_server(tmp_path)
    other = "some-other-" + server.token[::-1]
    try:
        in_query = httpx.get(f"{server.url}/vms", params={"token": server.token, "wait": "1"})
        assert in_query.status_code == 401  # a token in the URL is not accepted either
        assert httpx.get(f"{server.url}/health", params={"access_token": other}).status_code == 200
        assert httpx.get(f"{server.url}/static/{server.token}").status_code == 404
    finally:
        server.stop()
    log = server.log.read_text()
    assert "GET /vms?token=[redacted]&wait=1" in log  # the request is logged...
    assert "GET /health?access_token=[redacted]" in log
    assert "GET /static/[redacted]" in log
    assert server.token not in log  # ...without the token
    assert other not in log  # or anything named like one
