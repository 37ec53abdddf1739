"""VM events derived from main's history, with resume tokens and lost-events detection."""

from __future__ import annotations

import threading

import pytest

from toolstack.events import EventsLost, events_since, follow


def kinds(events, vm=None):
    return [(e.kind, e.name) for e in events if e.kind != "observed" and (vm is None or e.name == vm)]


def test_operations_become_vm_events_with_resume_tokens(sim_ts):
    start = sim_ts.main.head
    sim_ts.create("ev", memory="64M", disks=["/srv/ev.img"])
    sim_ts.start("ev")
    sim_ts.set_resources("ev", memory="128M")
    sim_ts.attach_nic("ev", network="default")
    sim_ts.pause("ev")
    sim_ts.resume("ev")
    sim_ts.destroy("ev")
    sim_ts.delete("ev")
    events = events_since(sim_ts.store, start)
    assert kinds(events) == [
        ("created", "ev"),
        ("device-added", "ev"),
        ("started", "ev"),
        ("config-changed", "ev"),
        ("device-added", "ev"),
        ("paused", "ev"),
        ("resumed", "ev"),
        ("stopped", "ev"),
        ("device-removed", "ev"),
        ("device-removed", "ev"),
        ("deleted", "ev"),
    ]
    changed = next(e for e in events if e.kind == "config-changed")
    assert changed.detail == {"fields": ["memory"]}
    assert changed.author == "tester <tester@" + changed.author.split("@", 1)[1]
    observed = [e.detail["state"] for e in events if e.kind == "observed"]
    assert observed[:2] == ["shutoff", "running"]
    # Resuming after any event's token gives exactly the events of the later commits.
    tokens = list(dict.fromkeys(e.token for e in events))
    middle = tokens[3]
    assert events_since(sim_ts.store, middle) == [e for e in events if tokens.index(e.token) > 3]


def test_an_unknown_or_squashed_token_is_reported_as_lost(sim_ts):
    sim_ts.create("x", memory="64M")
    with pytest.raises(EventsLost):
        events_since(sim_ts.store, "0" * 40)
    orphan = sim_ts.store.write_commit(sim_ts.main.tree.set("z", b"1"), [], "not on main")
    with pytest.raises(EventsLost):
        events_since(sim_ts.store, orphan)


def test_follow_streams_events_made_after_it_started(sim_ts):
    sim_ts.create("f", memory="64M")
    stop = threading.Event()
    seen: list[str] = []

    def consume() -> None:
        for event in follow(sim_ts.store, sim_ts.main.head, poll=0.02, stop=stop):
            seen.append(event.kind)
            if event.kind == "started":
                stop.set()

    reader = threading.Thread(target=consume)
    reader.start()
    sim_ts.start("f")
    reader.join(timeout=10)
    stop.set()
    assert "started" in seen


def test_gc_squashes_history_and_old_tokens_report_lost_events(sim_ts, tmp_path):
    import subprocess
    import sys

    from tests.toolstack.conftest import ROOT

    sim_ts.create("old", memory="64M")
    old_token = sim_ts.main.head
    sim_ts.start("old")
    sim_ts.create("new", memory="64M")
    recent = sim_ts.main.head
    env = {"PYTHONPATH": ROOT, "PATH": "/usr/bin:/bin"}
    base = [
        sys.executable,
        "-m",
        "toolstack.cli",
        "--repo",
        sim_ts.store.gitdir,
        "--driver",
        f"sim://{tmp_path}/sim",
        "--json",
    ]
    subprocess.run([*base, "gc", "--before", "main~1"], check=True, capture_output=True, env=env)
    lost = subprocess.run([*base, "events", "--since", old_token], capture_output=True, text=True, env=env)
    assert lost.returncode == 1 and "lost" in lost.stderr
    with pytest.raises(EventsLost):
        events_since(sim_ts.store, old_token)
    # The state itself is intact, and the archived history still holds the old commits.
    assert sorted(vm.name for vm in sim_ts.vms()) == ["new", "old"]
    archived = sim_ts.store.backend.list_refs("refs/archive/")
    assert list(archived.values()) == [recent]
