"""The event stream: Server-Sent Events whose ids are commit ids, resumable with Last-Event-ID, 410 when the
token was squashed away, and live over a real server."""

from __future__ import annotations

import json
import threading
import time

from tests.toolstack.api.conftest import create


def parse_sse(text: str) -> list[dict]:
    """SSE messages as dicts of their fields (data parsed as JSON)."""
    messages = []
    for block in text.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(": ")
            fields[key] = json.loads(value) if key == "data" else value
        if "event" in fields:
            messages.append(fields)
    return messages


def vm_events(messages: list[dict]) -> list[tuple[str, str]]:
    return [(m["event"], m["data"]["name"]) for m in messages if m["event"] not in ("ready", "observed")]


def test_a_finite_stream_gives_every_event_with_its_commit_as_the_event_id(client, ts):
    start = ts.main.head
    create(client, "ev")
    client.post("/vms/ev/start")
    client.patch("/vms/ev", json={"memory": 512})
    response = client.get("/events", params={"since": start, "follow": "false"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    messages = parse_sse(response.text)
    assert messages[0]["event"] == "ready" and "id" not in messages[0]
    assert vm_events(messages) == [("created", "ev"), ("started", "ev"), ("config-changed", "ev")]
    for message in messages[1:]:
        assert message["id"] == message["data"]["token"]
        assert len(message["id"]) == 40
    operations = [h["commit"] for h in client.get("/vms/ev/history").json()["items"]]
    assert {m["id"] for m in messages[1:]} == set(operations)


def test_last_event_id_resumes_right_after_that_commit(client, ts):
    start = ts.main.head
    create(client, "r")
    client.post("/vms/r/start")
    client.post("/vms/r/pause")
    messages = parse_sse(client.get("/events", params={"since": start, "follow": "false"}).text)
    started = next(m for m in messages if m["event"] == "started")
    resumed = client.get("/events", params={"follow": "false"}, headers={"Last-Event-ID": started["id"]})
    assert vm_events(parse_sse(resumed.text)) == [("paused", "r")]
    abbreviated = client.get("/events", params={"follow": "false", "since": started["id"][:12]})
    assert vm_events(parse_sse(abbreviated.text)) == [("paused", "r")]


def test_a_token_squashed_away_gets_410_events_lost(client, ts):
    create(client, "x")
    orphan = ts.store.write_commit(ts.main.tree.set("z", b"1"), [], "not on main")
    for token in (orphan, "0" * 40):
        response = client.get("/events", params={"since": token, "follow": "false"})
        assert response.status_code == 410
        assert response.json()["error"] == "events_lost"
    assert client.get("/events", params={"since": "no-such-rev"}).status_code == 404


def test_a_live_stream_on_a_real_server_delivers_events_as_they_happen(live_server):
    seen: list[dict] = []
    ready = threading.Event()
    done = threading.Event()

    def listen() -> None:
        with (
            live_server.client() as http,
            http.stream("GET", "/events", timeout=httpx_timeout()) as response,
        ):
            assert response.status_code == 200
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    seen.extend(parse_sse(block + "\n\n"))
                    ready.set()
                    if any(m["event"] == "started" for m in seen):
                        done.set()
                        return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert ready.wait(10)
    with live_server.client() as http:
        assert http.post("/vms", json={"name": "live", "memory": "64M", "start": True}).status_code == 201
    assert done.wait(15), seen
    assert ("created", "live") in vm_events(seen) and ("started", "live") in vm_events(seen)
    assert seen[0]["event"] == "ready"
    listener.join(5)


def httpx_timeout():
    import httpx

    return httpx.Timeout(30, read=20)


def test_sse_heartbeats_keep_an_idle_stream_alive(app, ts):
    """A following stream with no news sends SSE comments; it ends when the client goes away."""
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from tests.toolstack.api.conftest import AUTH

    app.state.api.settings = replace(app.state.api.settings, events_heartbeat=0.05)
    with TestClient(app, headers=AUTH) as client, client.stream("GET", "/events") as response:
        started = time.monotonic()
        received = ""
        for chunk in response.iter_text():
            received += chunk
            if received.count(": keep-alive") >= 2 or time.monotonic() - started > 10:
                break
    assert received.count(": keep-alive") >= 2
