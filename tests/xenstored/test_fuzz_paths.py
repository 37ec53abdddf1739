"""Fuzzing with deep, wide and long paths, as dom0 and as a guest: whatever is accepted is committed.

In durable mode a reply to a change promises its commit, so after any run of accepted requests the journal
must be healthy with nothing owed, the branch must hold exactly what the daemon serves, and (at teardown)
``git fsck --full`` must be clean.
"""

from __future__ import annotations

import subprocess

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import git
from tests.xenstored.wire import error_name
from xenstored.protocol import Op

NAME = st.sampled_from(["a", "b", "x_y", "N-1", "z" * 200])
# Deep (up to 1,400 one-letter components), wide (several siblings) and long (200-byte names) paths.
PATH = st.one_of(
    st.lists(NAME, min_size=1, max_size=8).map(lambda parts: "/".join(parts)),
    st.integers(1, 1400).map(lambda depth: "/".join(["d"] * depth)),
)
REQUEST = st.tuples(st.sampled_from([Op.WRITE, Op.MKDIR, Op.RM]), PATH, st.binary(max_size=16))
REFUSALS = {"EINVAL", "ENOSPC", "EACCES", "ENOENT"}  # bad input and quotas; never EIO or EROFS


def test_every_accepted_request_is_committed(durable_daemon):
    guest_socket = durable_daemon.introduce(7)
    written: set[str] = set()

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.tuples(st.booleans(), REQUEST), min_size=1, max_size=6))
    def run(requests):  # type: ignore[no-untyped-def]
        with durable_daemon.wire(timeout=60) as dom0, durable_daemon.wire(guest_socket, timeout=60) as dom7:
            for as_guest, (op, relative, value) in requests:
                client, path = (dom7, f"/local/domain/7/{relative}") if as_guest else (dom0, f"/f/{relative}")
                reply = client.write(path, value) if op == Op.WRITE else client.call(op, path)
                assert error_name(reply) in REFUSALS | {None}, (op, path[:80], reply)
                written.add(path)
            status = dom0.call(Op.CONTROL, "status").payload.decode()
            assert "journal ok" in status and "pending 0" in status, status

    run()
    with durable_daemon.wire() as dom0:
        for path in written:
            served = dom0.call(Op.READ, path)
            if error_name(served) == "ENOENT":
                assert git(durable_daemon.repo, "ls-tree", "main", path[1:]) == ""
            else:
                assert served.payload == committed_value(durable_daemon.repo, path)


def committed_value(repo: str, path: str) -> bytes:
    """A node's value as the branch holds it (raw bytes: values need not be text)."""
    shown = subprocess.run(
        ["git", "-C", repo, "show", f"main:{path[1:]}/.value"], capture_output=True, check=True
    )
    return shown.stdout
