"""Watches: the first firing, changes at or under the path, merges, other writers, domain events."""

from __future__ import annotations

import time

from store import Store
from tests.xenstored.wire import WireClient, error_name
from xenstored.protocol import Op


def event_paths(client: WireClient, count: int) -> list[str]:
    paths = []
    for _ in range(count):
        event = client.event()
        assert (event.op, event.req_id, event.tx_id) == (Op.WATCH_EVENT, 0, 0)
        path, _token, rest = event.payload.split(b"\0")
        assert rest == b""
        paths.append(path.decode())
    return paths


class TestFiring:
    def test_fires_once_on_registration_echoing_the_token(self, daemon):
        with daemon.wire() as client:
            reply = client.call(Op.WATCH, "/w/never-written", "tok-1")
            assert reply.payload == b"OK\0"
            event = client.event()
            assert (event.req_id, event.tx_id) == (0, 0)
            assert event.payload == b"/w/never-written\0tok-1\0"

    def test_fires_on_changes_at_or_under_the_path_not_beside_it(self, daemon):
        with daemon.wire() as watcher, daemon.wire() as writer:
            writer.write("/w/a", "1")
            watcher.call(Op.WATCH, "/w/a", "t")
            assert event_paths(watcher, 1) == ["/w/a"]
            writer.write("/w/a", "2")
            writer.write("/w/ab", "beside")
            writer.write("/w/a/child", "3")
            writer.call(Op.SET_PERMS, "/w/a", "b0", "r3")
            writer.call(Op.RM, "/w/a/child")
            assert event_paths(watcher, 4) == ["/w/a", "/w/a/child", "/w/a", "/w/a/child"]

    def test_removing_an_ancestor_fires_watches_inside_it(self, daemon):
        with daemon.wire() as watcher, daemon.wire() as writer:
            writer.write("/w/tree/deep/leaf", "x")
            watcher.call(Op.WATCH, "/w/tree/deep/leaf", "t")
            event_paths(watcher, 1)
            writer.call(Op.RM, "/w/tree")
            assert event_paths(watcher, 1) == ["/w/tree/deep/leaf"]

    def test_relative_watches_get_relative_paths(self, daemon):
        with daemon.wire() as watcher, daemon.wire() as writer:
            watcher.call(Op.WATCH, "device", "rel")
            assert event_paths(watcher, 1) == ["device"]
            writer.write("/local/domain/0/device/vif", "1")
            assert event_paths(watcher, 1) == ["device/vif"]

    def test_transaction_changes_fire_when_merged_not_before(self, daemon):
        with daemon.wire() as watcher, daemon.wire() as writer:
            watcher.call(Op.WATCH, "/w/tx", "t")
            event_paths(watcher, 1)
            tx = writer.start()
            writer.write("/w/tx/a", "1", tx_id=tx)
            watcher.call(Op.READ, "/")  # a round trip: no event may have arrived before it
            assert watcher.events == []
            writer.end(tx)
            assert event_paths(watcher, 1) == ["/w/tx/a"]

    def test_unwatch_stops_events_and_unknown_watches_are_enoent(self, daemon):
        with daemon.wire() as watcher, daemon.wire() as writer:
            watcher.call(Op.WATCH, "/w/u", "t")
            event_paths(watcher, 1)
            assert watcher.call(Op.UNWATCH, "/w/u", "t").payload == b"OK\0"
            writer.write("/w/u", "1")
            watcher.call(Op.READ, "/w/u")
            assert watcher.events == []
            assert error_name(watcher.call(Op.UNWATCH, "/w/u", "t")) == "ENOENT"
            watcher.call(Op.WATCH, "/w/v", "t")
            assert error_name(watcher.call(Op.WATCH, "/w/v", "t")) == "EEXIST"
            assert watcher.call(Op.RESET_WATCHES, "").payload == b"OK\0"
            assert watcher.call(Op.WATCH, "/w/v", "t").payload == b"OK\0"

    def test_introduce_and_release_fire_the_special_watches(self, daemon):
        with daemon.wire() as watcher, daemon.wire() as admin:
            watcher.call(Op.WATCH, "@introduceDomain", "in")
            watcher.call(Op.WATCH, "@releaseDomain", "out")
            assert sorted(event_paths(watcher, 2)) == ["@introduceDomain", "@releaseDomain"]
            admin.call(Op.INTRODUCE, "5", "100", "3")
            assert watcher.event().payload == b"@introduceDomain\0in\0"
            admin.call(Op.RELEASE, "5")
            assert watcher.event().payload == b"@releaseDomain\0out\0"


class TestOtherWriters:
    def test_a_commit_by_another_process_fires_watches_and_is_read(self, daemon):
        with daemon.wire() as watcher:
            watcher.write("/other/seen", "before")
            watcher.call(Op.WATCH, "/other", "t")
            event_paths(watcher, 1)
            watcher.call(Op.CONTROL, "flush")
            store = Store.open(daemon.repo, create=False)
            try:
                deadline = time.monotonic() + 10
                while store.branch("main").get("other/seen/.value") != b"before":
                    assert time.monotonic() < deadline, "the daemon never committed"
                    time.sleep(0.02)
                with store.branch("main").transaction("external edit", "toolstack") as tx:
                    tx.set("other/seen/.value", b"after")
                    tx.set("other/new/.value", b"n")
                    tx.set("other/new/.perms", b"b4\n")
            finally:
                store.close()
            assert sorted(event_paths(watcher, 2)) == ["/other/new", "/other/seen"]
            assert watcher.call(Op.READ, "/other/seen").payload == b"after"
            assert watcher.call(Op.GET_PERMS, "/other/new").payload == b"b4\0"
