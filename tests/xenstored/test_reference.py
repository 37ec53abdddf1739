"""Differential tests: the same requests to our daemon and to Debian's oxenstored (the reference), the
same replies and watch events.

They skip only when oxenstored is not installed (``scripts/bootstrap.sh`` installs xen-utils-4.17, so CI
runs them); anything else that goes wrong with the reference daemon fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.xenstored.wire import WireClient, error_name
from xenstored import reference
from xenstored.protocol import Op

pytestmark = pytest.mark.skipif(
    not reference.available(), reason=f"oxenstored is not installed ({reference.BINARY}: xen-utils-4.17)"
)


@pytest.fixture(scope="module")
def oxenstored(tmp_path_factory) -> Iterator[reference.Oxenstored]:
    instance = reference.Oxenstored(str(tmp_path_factory.mktemp("oxs")))
    yield instance
    instance.stop()


def replies(client: WireClient, requests: list[tuple[int, tuple[str, ...]]]) -> list[str]:
    """Each reply as text ("OK", "ENOENT", a value), then the watch events that followed it."""
    out = []
    for op, args in requests:
        reply = client.write(args[0], args[1]) if op == Op.WRITE else client.call(op, *args)
        out.append(error_name(reply) or reply.payload.decode())
        out.append(f"events {events(client)}")
    return out


def events(client: WireClient, quiet: float = 0.3) -> list[str]:
    """The watch events that arrive until the connection is quiet for ``quiet`` seconds."""
    seen = [p.payload.decode() for p in client.events]
    client.events.clear()
    client.sock.settimeout(quiet)
    try:
        while True:
            packet = client.receive()
            assert packet.op == Op.WATCH_EVENT, packet
            seen.append(packet.payload.decode())
    except TimeoutError:
        pass
    finally:
        client.sock.settimeout(10)
    return seen


def both(daemon, oxenstored, requests: list[tuple[int, tuple[str, ...]]]) -> tuple[list[str], list[str]]:
    with daemon.wire() as ours, WireClient(oxenstored.socket) as ref:
        return replies(ours, requests), replies(ref, requests)


class TestWatchesFireOnEveryWrite:
    @pytest.mark.parametrize(
        "requests",
        [
            pytest.param([(Op.WRITE, ("/w1/n", "same"))], id="rewriting-the-same-value"),
            pytest.param([(Op.SET_PERMS, ("/w1/n", "n0"))], id="setting-the-same-permissions"),
            pytest.param([(Op.MKDIR, ("/w1/n",))], id="mkdir-of-an-existing-node"),
            pytest.param([(Op.MKDIR, ("/w1/new",))], id="mkdir-of-a-new-node"),
            pytest.param([(Op.RM, ("/w1/absent",))], id="rm-of-an-absent-child"),
        ],
    )
    def test_the_same_events_as_oxenstored(self, daemon, oxenstored, requests):
        setup = [(Op.WRITE, ("/w1/n", "same")), (Op.SET_PERMS, ("/w1/n", "n0")), (Op.WATCH, ("/w1", "tok"))]
        ours, ref = both(daemon, oxenstored, setup + requests)
        assert ours == ref

    def test_rewriting_the_same_value_in_a_transaction_fires_at_its_end(self, daemon, oxenstored):
        seen = []
        for socket_path in (daemon.socket, oxenstored.socket):
            with WireClient(socket_path) as client:
                client.write("/w2/n", "same")
                client.call(Op.WATCH, "/w2", "tok")
                events(client)
                tx = client.start()
                client.write("/w2/n", "same", tx)
                during = events(client)
                assert client.end(tx).payload == b"OK\0"
                seen.append((during, events(client)))
        assert seen[0] == seen[1] == ([], ["/w2/n\0tok\0"])


class TestPathRules:
    def test_at_paths_name_nodes_at_the_root_as_in_oxenstored(self, daemon, oxenstored):
        requests = [
            (Op.WRITE, ("@foo", "1")),
            (Op.READ, ("@foo",)),
            (Op.READ, ("/@foo",)),
            (Op.READ, ("/local/domain/0/@foo",)),
            (Op.READ, ("@nothing",)),
            (Op.WATCH, ("@foo", "t1")),
            (Op.WATCH, ("@releaseDomain", "t2")),
            (Op.WRITE, ("/a/@b", "x")),
            (Op.READ, ("/a/@b",)),
        ]
        ours, ref = both(daemon, oxenstored, requests)
        assert ours == ref

    def test_the_special_watch_names_are_nodes_at_the_root_as_in_oxenstored(self, daemon, oxenstored):
        # oxenstored starts with empty nodes /@introduceDomain and /@releaseDomain owned by dom0 (n0): "@x"
        # names "/@x", so reading a special watch name reads that node. (Only reads: the oxenstored is
        # shared by the tests of this module.)
        requests = [
            (Op.READ, ("@introduceDomain",)),
            (Op.READ, ("/@introduceDomain",)),
            (Op.READ, ("@releaseDomain",)),
            (Op.GET_PERMS, ("@introduceDomain",)),
            (Op.GET_PERMS, ("/@releaseDomain",)),
            (Op.DIRECTORY, ("@introduceDomain",)),
            (Op.DIRECTORY, ("/@releaseDomain",)),
        ]
        ours, ref = both(daemon, oxenstored, requests)
        assert ours == ref
        assert ours[0] == ""  # not ENOENT, as before

    def test_the_special_nodes_are_listed_written_and_removed_as_in_oxenstored(self, daemon, tmp_path):
        # An oxenstored of its own, fresh: this lists and changes the root.
        theirs = reference.Oxenstored(str(tmp_path / "oxs"))
        try:
            requests = [
                (Op.DIRECTORY, ("/",)),
                (Op.WATCH, ("/", "root")),
                (Op.WRITE, ("@introduceDomain", "x")),
                (Op.READ, ("/@introduceDomain",)),
                (Op.WRITE, ("/@releaseDomain/child", "v")),
                (Op.DIRECTORY, ("/@releaseDomain",)),
                (Op.SET_PERMS, ("/@releaseDomain", "b3")),
                (Op.GET_PERMS, ("/@releaseDomain",)),
                (Op.RM, ("@introduceDomain",)),
                (Op.READ, ("@introduceDomain",)),
                (Op.DIRECTORY, ("/",)),
                (Op.MKDIR, ("@introduceDomain",)),
                (Op.GET_PERMS, ("/@introduceDomain",)),
                (Op.RM, ("/@releaseDomain",)),
                (Op.DIRECTORY, ("/",)),
            ]
            ours, ref = both(daemon, theirs, requests)
            assert ours == ref
            assert ours[0] == "@introduceDomain\0@releaseDomain\0local\0tool\0"
        finally:
            theirs.stop()
