"""Bad input gets an error reply or a closed connection; the daemon never dies and the store stays sound."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.xenstored.conftest import finish, start_daemon
from tests.xenstored.wire import WireClient, error_name
from xenstored.protocol import HEADER, PAYLOAD_MAX, Op, Packet


def closed_by_daemon(client: WireClient) -> bool:
    try:
        return client.sock.recv(1) == b""
    except ConnectionResetError:
        return True


class TestMalformedInput:
    @pytest.mark.parametrize(
        "path",
        [
            b"",
            b"/a//b",
            b"/trailing/",
            b"/bad char",
            b"/dot.ted",
            b"/" + b"x" * 3100,
            b"rel/" + b"y" * 2100,
        ],
    )
    def test_invalid_paths_get_einval(self, shared_daemon, path):
        with shared_daemon.wire() as client:
            for op in (Op.READ, Op.MKDIR, Op.RM, Op.DIRECTORY, Op.GET_PERMS):
                assert error_name(client.request(op, path + b"\0")) == "EINVAL", (op, path)
            assert error_name(client.request(Op.WRITE, path + b"\0value")) == "EINVAL"

    @pytest.mark.parametrize("op", [15, 16, 20, 23, 99, 0xFFFFFFFF])
    def test_unknown_or_reply_only_types_get_enosys(self, shared_daemon, op):
        with shared_daemon.wire() as client:
            reply = client.request(op, b"/x\0")
            assert (reply.op, error_name(reply)) == (Op.ERROR, "ENOSYS")

    def test_errors_echo_the_request_and_transaction_ids(self, shared_daemon):
        with shared_daemon.wire() as client:
            client.send(Packet(Op.READ, 4242, 777, b"/x\0").encode())
            reply = client.receive()
            assert (reply.op, reply.req_id, reply.tx_id, reply.payload) == (Op.ERROR, 4242, 777, b"ENOENT\0")

    def test_missing_nul_bad_numbers_and_bad_permissions_get_einval(self, shared_daemon):
        with shared_daemon.wire() as client:
            assert error_name(client.request(Op.READ, b"/no-nul")) == "EINVAL"
            assert error_name(client.request(Op.WRITE, b"/no-nul-at-all")) == "EINVAL"
            assert error_name(client.call(Op.GET_DOMAIN_PATH, "abc")) == "EINVAL"
            assert error_name(client.call(Op.GET_DOMAIN_PATH, "99999999999")) == "EINVAL"
            client.write("/perm-target", "v")
            assert error_name(client.call(Op.SET_PERMS, "/perm-target", "x5")) == "EINVAL"
            assert error_name(client.call(Op.SET_PERMS, "/perm-target")) == "EINVAL"
            assert error_name(client.call(Op.TRANSACTION_END, "maybe", tx_id=client.start())) == "EINVAL"

    def test_unknown_transaction_ids_get_enoent(self, shared_daemon):
        with shared_daemon.wire() as client:
            assert error_name(client.call(Op.READ, "/", tx_id=123456)) == "ENOENT"
            assert error_name(client.call(Op.TRANSACTION_END, "T", tx_id=98765)) == "ENOENT"
            tx = client.start()
            assert error_name(client.call(Op.TRANSACTION_START, "", tx_id=tx)) == "EBUSY"
            with shared_daemon.wire() as other:  # a transaction belongs to its connection
                assert error_name(other.call(Op.READ, "/", tx_id=tx)) == "ENOENT"

    def test_a_payload_of_exactly_the_maximum_is_served(self, shared_daemon):
        with shared_daemon.wire() as client:
            path = b"/max"
            value = b"v" * (PAYLOAD_MAX - len(path) - 1)
            assert client.request(Op.WRITE, path + b"\0" + value).payload == b"OK\0"
            assert client.call(Op.READ, "/max").payload == value

    def test_an_oversized_payload_closes_the_connection(self, shared_daemon):
        with shared_daemon.wire() as client:
            client.send(HEADER.pack(Op.WRITE, 1, 0, PAYLOAD_MAX + 1) + b"x" * 100)
            assert closed_by_daemon(client)
        with shared_daemon.wire() as client:
            assert client.call(Op.READ, "/").op == Op.READ

    def test_abrupt_disconnects_mid_packet_and_mid_transaction(self, shared_daemon):
        for partial in (b"\x02\x00", HEADER.pack(Op.READ, 1, 0, 50) + b"/half"):
            raw = socket.socket(socket.AF_UNIX)
            raw.connect(shared_daemon.socket)
            raw.sendall(partial)
            raw.close()
        client = shared_daemon.wire()
        tx = client.start()
        client.write("/abandoned", "never", tx_id=tx)
        client.close()
        with shared_daemon.wire() as fresh:
            assert error_name(fresh.call(Op.READ, "/abandoned")) == "ENOENT"
        assert shared_daemon.alive()


PATHS = [
    b"/",
    b"/fz",
    b"/fz/a",
    b"/fz/a/b",
    b"fz-rel",
    b"/local/domain/0",
    b"@introduceDomain",
    b"/fz//x",
    b"",
]


def _arg() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(PATHS),
        st.sampled_from([b"T", b"F", b"0", b"3", b"7", b"b3", b"n0", b"r5", b"quota", b"check", b"help"]),
        st.binary(max_size=40),
    )


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    op = draw(st.one_of(st.integers(0, 24), st.integers(0, 2**32 - 1)))
    req_id = draw(st.integers(0, 2**32 - 1))
    tx_id = draw(st.one_of(st.just(0), st.integers(0, 8), st.integers(0, 2**32 - 1)))
    args = draw(st.lists(_arg(), max_size=4))
    payload = b"".join(a + b"\0" for a in args) if draw(st.booleans()) else b"\0".join(args)
    raw = Packet(op, req_id, tx_id, payload).encode()
    mutation = draw(st.sampled_from(["none", "none", "flip", "truncate", "length", "junk"]))
    if mutation == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    elif mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "length":
        raw = raw[:12] + struct.pack("=I", draw(st.integers(0, 2 * PAYLOAD_MAX))) + raw[16:]
    elif mutation == "junk":
        raw = draw(st.binary(min_size=1, max_size=64))
    return raw


class TestFuzz:
    def test_ten_thousand_random_and_mutated_packets(self, tmp_path):
        daemon = start_daemon(str(tmp_path / "xs"))
        try:
            with daemon.wire() as setup:
                setup.write("/sentinel/keep", "intact")
                setup.call(Op.SET_PERMS, "/sentinel/keep", "b0", "r3")
            sent = 0

            @settings(
                max_examples=150,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(st.lists(packets(), min_size=25, max_size=45))
            def fuzz(batch: list[bytes]) -> None:
                nonlocal sent
                raw = socket.socket(socket.AF_UNIX)
                raw.settimeout(20)
                raw.connect(daemon.socket)
                try:
                    raw.sendall(b"".join(batch))
                    raw.shutdown(socket.SHUT_WR)
                    while raw.recv(65536):
                        pass  # drain replies until the daemon closes its side
                except (ConnectionResetError, BrokenPipeError):
                    pass  # an oversized header made the daemon close the connection: allowed
                finally:
                    raw.close()
                sent += len(batch)
                assert daemon.alive(), daemon.log()

            while sent < 10_000:
                fuzz()
            assert daemon.alive()
            with daemon.wire() as check:
                assert check.call(Op.READ, "/sentinel/keep").payload == b"intact"
                assert check.call(Op.GET_PERMS, "/sentinel/keep").payload == b"b0\0r3\0"
                assert check.write("/after-fuzz", "ok").payload == b"OK\0"
            daemon.run("xenstore-ls", "/")
        finally:
            finish(daemon)
