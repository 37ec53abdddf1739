"""The shared-ring transport without Xen: a file as the ring page, FIFOs as the event channel.

The page layout and index arithmetic are checked in process; the transport against the real daemon
(``--ring-dir``), played by a guest that writes its requests in pieces and across the ring's wrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import platform
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.xenstored.conftest import Daemon, finish, start_daemon
from tests.xenstored.ringguest import FileGuest
from tests.xenstored.wire import error_name
from xenstored.barrier import BARRIER_KIND, full_barrier
from xenstored.protocol import PAYLOAD_MAX, Op, Packet
from xenstored.ring import (
    INTERFACE_SIZE,
    REQ_CONS,
    REQ_PROD,
    RING_SIZE,
    RSP_OFFSET,
    RSP_PROD,
    GuestRing,
    Ring,
    RingError,
    _Page,
)
from xenstored.ringtransport import PipeDoorbell, RingTransport

WRAP = 2**32


def page() -> memoryview:
    return memoryview(bytearray(4096))


class TestRingPage:
    """The daemon's and the guest's sides of one page, in process."""

    def test_the_layout_is_xs_wire_h(self):
        # xenstore_domain_interface: two 1024-byte rings, four indexes, then features, connection, error.
        assert (RING_SIZE, REQ_CONS, REQ_PROD, RSP_PROD, INTERFACE_SIZE) == (1024, 2048, 2052, 2060, 2076)

    @settings(max_examples=300, deadline=None)
    @given(
        start=st.one_of(st.integers(0, WRAP - 1), st.integers(WRAP - 3 * RING_SIZE, WRAP - 1)),
        messages=st.lists(st.binary(min_size=1, max_size=3000), min_size=1, max_size=6),
        pieces=st.lists(st.integers(1, RING_SIZE + 100), min_size=1, max_size=20),
    )
    def test_bytes_cross_both_rings_intact_in_any_pieces_and_across_every_wrap(self, start, messages, pieces):
        buffer = page()
        guest, daemon = GuestRing(buffer), Ring(buffer)
        guest.start_at(start)
        stream = b"".join(messages)
        sizes = itertools.cycle(pieces)
        requests, responses = bytearray(), bytearray()
        sent = echoed = 0
        while len(responses) < len(stream):
            sent += guest.write_requests(stream[sent : sent + next(sizes)])
            requests += daemon.read_requests()
            echoed += daemon.write_responses(requests[echoed : echoed + next(sizes)])
            responses += guest.read_responses()
        assert bytes(requests) == stream
        assert bytes(responses) == stream

    def test_a_full_ring_takes_nothing_more_until_the_other_side_consumes(self):
        buffer = page()
        guest, daemon = GuestRing(buffer), Ring(buffer)
        guest.start_at(WRAP - 10)
        assert guest.write_requests(b"x" * 2000) == RING_SIZE
        assert guest.write_requests(b"y") == 0
        assert daemon.read_requests() == b"x" * RING_SIZE
        assert guest.write_requests(b"y") == 1

    @pytest.mark.parametrize("ahead", [RING_SIZE + 1, WRAP - 1])
    def test_a_producer_index_too_far_ahead_is_refused(self, ahead):
        buffer = page()
        guest, daemon = GuestRing(buffer), Ring(buffer)
        guest.start_at(5)
        buffer.cast("I")[REQ_PROD // 4] = (5 + ahead) % WRAP
        with pytest.raises(RingError, match="request ring"):
            daemon.read_requests()


@pytest.fixture(scope="module")
def ring_daemon(tmp_path_factory) -> Iterator[tuple[Daemon, str]]:
    directory = str(tmp_path_factory.mktemp("xs"))
    ring_dir = os.path.join(directory, "rings")
    instance = start_daemon(directory, "--ring-dir", ring_dir)
    yield instance, ring_dir
    finish(instance)


_domids = itertools.count(1)


def introduced(daemon: Daemon, ring_dir: str, start: int = 0) -> FileGuest:
    """A new guest domain with its page and event channel, introduced, owning its home."""
    guest = FileGuest(ring_dir, next(_domids), start)
    home = f"/local/domain/{guest.domid}"
    with daemon.wire() as dom0:
        assert dom0.call(Op.INTRODUCE, str(guest.domid), "4096", "9").payload == b"OK\0"
        assert dom0.call(Op.MKDIR, home).payload == b"OK\0"
        assert dom0.call(Op.SET_PERMS, home, f"n{guest.domid}").payload == b"OK\0"
    return guest


def release(daemon: Daemon, guest: FileGuest) -> None:
    with daemon.wire() as dom0:
        assert dom0.call(Op.RELEASE, str(guest.domid)).payload == b"OK\0"
    guest.close()


class TestRingTransport:
    """A guest's requests over its ring, served by the real daemon."""

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        start=st.one_of(st.integers(0, WRAP - 1), st.integers(WRAP - 2 * RING_SIZE, WRAP - 1)),
        values=st.lists(st.binary(min_size=0, max_size=2000), min_size=1, max_size=4),
        pieces=st.lists(st.integers(1, 1100), max_size=8),
    )
    def test_partial_and_wrapped_writes_are_served_in_order(self, ring_daemon, start, values, pieces):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir, start)
        try:
            for number, value in enumerate(values):
                payload = f"node{number}\0".encode() + value
                assert guest.request(Op.WRITE, payload, chunks=pieces).payload == b"OK\0"
            for number, value in enumerate(values):
                # Relative paths resolve under the guest's home: the ring speaks as its domain.
                reply = guest.request(Op.READ, f"node{number}\0".encode(), chunks=pieces)
                assert reply.payload == value
            with daemon.wire() as dom0:
                home = f"/local/domain/{guest.domid}"
                assert dom0.call(Op.READ, f"{home}/node0").payload == values[0]
        finally:
            release(daemon, guest)

    def test_a_request_larger_than_the_ring_waits_for_room(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir, WRAP - 100)
        try:
            value = bytes(range(256)) * 7  # 1792 bytes: within the guest's value quota, over a ring
            assert guest.request(Op.WRITE, b"big\0" + value).payload == b"OK\0"
            assert guest.request(Op.READ, b"big\0").payload == value
            big = guest.request(Op.WRITE, b"huge\0" + b"h" * (PAYLOAD_MAX - 5))
            assert error_name(big) == "ENOSPC"  # over the guest's value quota: refused, yet read whole
        finally:
            release(daemon, guest)

    def test_the_ring_speaks_as_its_domain(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir)
        try:
            assert error_name(guest.request(Op.WRITE, b"/tool/forbidden\0x")) == "EACCES"
            assert error_name(guest.request(Op.INTRODUCE, b"77\0001\0002\0")) == "EACCES"
            path = guest.request(Op.GET_DOMAIN_PATH, f"{guest.domid}\0".encode()).payload
            assert path == f"/local/domain/{guest.domid}\0".encode()
        finally:
            release(daemon, guest)

    def test_watch_events_reach_the_guest_over_its_ring(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir, RING_SIZE - 3)
        home = f"/local/domain/{guest.domid}"
        try:
            assert guest.request(Op.WATCH, b"device\0tok\0").payload == b"OK\0"
            # Relative watches get relative event paths, as from the reference daemons.
            assert guest.event().payload == b"device\0tok\0"  # the first firing
            with daemon.wire() as dom0:
                assert dom0.write(f"{home}/device/vbd/51712/state", "1").payload == b"OK\0"
            assert guest.event().payload == b"device/vbd/51712/state\0tok\0"
        finally:
            release(daemon, guest)

    def test_a_transaction_over_the_ring_commits_at_its_end_and_retries_on_a_conflict(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir, WRAP - 50)  # the transaction's packets cross the wrap
        home = f"/local/domain/{guest.domid}"
        try:
            tx = int(guest.request(Op.TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
            assert tx != 0
            assert guest.request(Op.WRITE, b"device/state\x004", tx_id=tx).payload == b"OK\0"
            with daemon.wire() as dom0:  # not visible outside the transaction before its end
                assert error_name(dom0.call(Op.READ, f"{home}/device/state")) == "ENOENT"
            assert guest.request(Op.TRANSACTION_END, b"T\0", tx_id=tx).payload == b"OK\0"
            with daemon.wire() as dom0:
                assert dom0.call(Op.READ, f"{home}/device/state").payload == b"4"
            # A conflict: dom0 changes what the transaction read, so its end is EAGAIN and nothing of it
            # lands; the retry, as xenbus clients do, commits.
            tx = int(guest.request(Op.TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
            assert guest.request(Op.READ, b"device/state\0", tx_id=tx).payload == b"4"
            with daemon.wire() as dom0:
                assert dom0.write(f"{home}/device/state", "5").payload == b"OK\0"
            assert guest.request(Op.WRITE, b"device/seen\x004", tx_id=tx).payload == b"OK\0"
            assert error_name(guest.request(Op.TRANSACTION_END, b"T\0", tx_id=tx)) == "EAGAIN"
            assert error_name(guest.request(Op.READ, b"device/seen\0")) == "ENOENT"
            tx = int(guest.request(Op.TRANSACTION_START, b"\0").payload.rstrip(b"\0"))
            seen = guest.request(Op.READ, b"device/state\0", tx_id=tx).payload
            assert guest.request(Op.WRITE, b"device/seen\0" + seen, tx_id=tx).payload == b"OK\0"
            assert guest.request(Op.TRANSACTION_END, b"T\0", tx_id=tx).payload == b"OK\0"
            assert guest.request(Op.READ, b"device/seen\0").payload == b"5"
        finally:
            release(daemon, guest)

    def test_introduce_and_release_fire_their_special_watches(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        with daemon.wire() as dom0:
            for special in ("@introduceDomain", "@releaseDomain"):
                assert dom0.call(Op.WATCH, special, special).payload == b"OK\0"
                assert dom0.event().payload == f"{special}\0{special}\0".encode()
            guest = introduced(daemon, ring_dir)
            assert dom0.event().payload == b"@introduceDomain\0@introduceDomain\0"
            release(daemon, guest)
            assert dom0.event().payload == b"@releaseDomain\0@releaseDomain\0"
            assert dom0.call(Op.IS_DOMAIN_INTRODUCED, str(guest.domid)).payload == b"F\0"

    def test_a_released_domain_can_be_introduced_again_on_a_new_page(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir)
        assert guest.request(Op.WRITE, b"first\0life").payload == b"OK\0"
        release(daemon, guest)
        again = FileGuest(ring_dir, guest.domid, start=12345)
        try:
            with daemon.wire() as dom0:
                assert dom0.call(Op.INTRODUCE, str(again.domid), "4096", "9").payload == b"OK\0"
            assert again.request(Op.READ, b"first\0").payload == b"life"
        finally:
            release(daemon, again)

    def test_a_ring_whose_indexes_are_impossible_is_dropped_and_the_daemon_serves_on(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir)
        guest.page.cast("I")[REQ_PROD // 4] = 5000  # more than a ring ahead of req_cons (0)
        guest.kick()
        deadline = time.monotonic() + 10
        while f"dom{guest.domid}: impossible ring indexes" not in daemon.log():
            assert time.monotonic() < deadline, daemon.log()
            time.sleep(0.02)
        with daemon.wire() as dom0:
            assert dom0.write("/after/bad/ring", "still here").payload == b"OK\0"
            assert dom0.call(Op.READ, "/after/bad/ring").payload == b"still here"
        release(daemon, guest)

    def test_control_rings_shows_each_domain_s_indexes(self, ring_daemon):
        daemon, ring_dir = ring_daemon
        guest = introduced(daemon, ring_dir)
        try:
            request = Packet(Op.READ, 7, 0, f"/local/domain/{guest.domid}\0".encode()).encode()
            guest.send(request)
            reply = guest.receive().encode()
            with daemon.wire() as dom0:
                report = dom0.call(Op.CONTROL, "rings").payload.decode()
            line = f"dom{guest.domid}: req {len(request)}/{len(request)} rsp {len(reply)}/{len(reply)} held 0"
            assert f"{line} paused no\n" in report
        finally:
            release(daemon, guest)

    def test_introduce_without_a_ring_page_fails_and_leaves_the_domain_unknown(self, ring_daemon):
        daemon, _ = ring_daemon
        with daemon.wire() as dom0:
            reply = dom0.call(Op.INTRODUCE, "30001", "4096", "9")
            assert error_name(reply) == "EIO"
            assert dom0.call(Op.IS_DOMAIN_INTRODUCED, "30001").payload == b"F\0"


def test_packets_cut_anywhere_reassemble(ring_daemon):
    """Every cut point of one request, byte by byte on the wire, gets one reply."""
    daemon, ring_dir = ring_daemon
    guest = introduced(daemon, ring_dir, WRAP - 7)
    try:
        request = Packet(Op.WRITE, 99, 0, b"cut\0abcdef").encode()
        for cut in range(1, len(request)):
            guest.send(request, [cut])
            reply = guest.receive()
            assert (reply.req_id, reply.payload) == (99, b"OK\0")
    finally:
        release(daemon, guest)


class Guest:
    """A domain's side of an in-process ring page, kicking (a pipe) only when Linux's xenbus would."""

    def __init__(self, buffer: memoryview) -> None:
        self.ring = GuestRing(buffer)
        self.kicks_read, self._kicks = os.pipe()
        self.notified_read, self.notified = os.pipe()
        os.set_blocking(self.notified_read, False)
        self.kicked: list[bool] = []
        self.taken = bytearray()

    def writes(self, data: bytes) -> None:
        written, kick = self.ring.produce(data)
        assert written == len(data)
        self._kick_if(kick)

    def reads(self) -> None:
        data, kick = self.ring.consume()
        self.taken += data
        self._kick_if(kick)

    def _kick_if(self, kick: bool) -> None:
        self.kicked.append(kick)
        if kick:
            os.write(self._kicks, b"k")


class Sink(asyncio.Protocol):
    """A protocol that keeps what it receives."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


def serve(
    buffer: memoryview,
    guest: Guest,
    sink: Sink,
    begin: Callable[[RingTransport], None],
    done: Callable[[], bool],
) -> None:
    """A ring transport on ``buffer`` for ``guest``; ``begin`` once it has looked at the empty ring, then the
    loop runs until ``done()`` or 5 s."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        doorbell = PipeDoorbell(loop, guest.kicks_read, guest.notified)
        transport = RingTransport(loop, Ring(buffer), doorbell, sink)
        await asyncio.sleep(0.05)
        begin(transport)
        deadline = loop.time() + 5
        while not done() and loop.time() < deadline:
            await asyncio.sleep(0.01)
        transport.abort()

    asyncio.run(run())


def test_the_barrier_is_the_machine_s_own_fence():
    # A lock round trip is a full barrier only on x86; on the machines Xen's dom0 runs on, the fence itself.
    if platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64"):
        assert BARRIER_KIND == "native"
    full_barrier()  # and it returns


class TestKicksTheGuestLeavesOut:
    """Linux's xenbus kicks after producing requests only if the daemon had consumed every earlier one, and
    after reading responses only if the ring was full. What the guest does while the daemon is at work on its
    ring comes with no kick, so the daemon must look again (the boot storm's guests that hung at their first
    request). The guest's move is injected at the one moment that matters: after the daemon has read the
    guest's index and before it has moved its own."""

    def test_requests_produced_while_the_daemon_consumes_are_read_without_a_kick(self, mocker):
        buffer = page()
        guest, sink = Guest(buffer), Sink()
        request = Packet(Op.READ, 1, 0, b"/a/path\0").encode()
        header, body = request[:16], request[16:]
        copy_out = _Page.copy_out

        def body_arrives_meanwhile(page_: _Page, base: int, start: int, count: int) -> bytes:
            data = copy_out(page_, base, start, count)
            if len(guest.kicked) == 1:
                guest.writes(body)  # the daemon has read req_prod (16), not yet moved req_cons (0)
            return data

        mocker.patch.object(_Page, "copy_out", body_arrives_meanwhile)
        serve(buffer, guest, sink, lambda _: guest.writes(header), lambda: len(sink.received) >= len(request))
        assert guest.kicked == [True, False]  # Linux kicks for the header only
        assert bytes(sink.received) == request

    def test_room_the_guest_makes_while_the_daemon_produces_is_used_without_a_kick(self, mocker):
        buffer = page()
        guest, sink = Guest(buffer), Sink()
        first, second = b"a" * 1000, b"b" * 2000
        copy_in = _Page.copy_in

        def guest_reads_meanwhile(page_: _Page, base: int, start: int, data: memoryview) -> None:
            copy_in(page_, base, start, data)
            if not guest.kicked and base == RSP_OFFSET and len(data) == RING_SIZE - len(first):
                guest.reads()  # the daemon has read rsp_cons, not yet moved rsp_prod to fill the ring

        def begin(transport: RingTransport) -> None:
            transport.write(first)  # unread: the ring holds 1000 of its 1024 bytes
            mocker.patch.object(_Page, "copy_in", guest_reads_meanwhile)
            transport.write(second)  # 24 bytes fit; meanwhile the guest reads the first 1000
            asyncio.get_running_loop().add_reader(guest.notified_read, woken)

        def woken() -> None:
            with contextlib.suppress(BlockingIOError):
                os.read(guest.notified_read, 4096)
            guest.reads()

        serve(buffer, guest, sink, begin, lambda: len(guest.taken) >= len(first + second))
        assert guest.kicked[0] is False  # the ring was not full when the guest looked: Linux does not kick
        assert bytes(guest.taken) == first + second
