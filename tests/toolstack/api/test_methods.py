"""HTTP methods (RFC 9110): OPTIONS answers with the methods a path has, and a 405 names them in ``Allow``."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/vms", "GET, HEAD, POST, OPTIONS"),
        ("/vms/web1", "GET, HEAD, PATCH, DELETE, OPTIONS"),
        ("/vms/web1/start", "POST, OPTIONS"),
        ("/tasks", "GET, HEAD, OPTIONS"),
        ("/static/app.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_options_answers_204_with_every_method_of_the_path(anon, path, allow):
    response = anon.options(path)
    assert response.status_code == 204
    assert response.headers["allow"] == allow
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/vms", "GET, HEAD, POST, OPTIONS"),
        ("POST", "/vms/web1", "GET, HEAD, PATCH, DELETE, OPTIONS"),
        ("GET", "/vms/web1/start", "POST, OPTIONS"),
        ("DELETE", "/static/app.js", "GET, HEAD, OPTIONS"),
    ],
)
def test_a_method_the_path_does_not_have_is_405_naming_every_method_it_has(client, method, path, allow):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["error"] == "method_not_allowed"


def test_a_path_no_route_has_is_404_to_options_too(anon):
    assert anon.options("/nowhere").status_code == 404
