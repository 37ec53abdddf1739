"""A small asyncio xenstore client (for the benchmark and for tools): any daemon, over a unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket

from xenstored.protocol import HEADER, Op, Packet, PacketReader


class ClientError(Exception):
    """An ERROR reply.

    Attributes:
        errno: Its errno name ("EAGAIN").
        op: The request type that failed.
    """

    def __init__(self, errno: str, op: int) -> None:
        self.errno = errno
        self.op = op
        super().__init__(f"{Op(op).name if op in Op._value2member_map_ else op}: {errno}")


class AsyncClient:
    """One connection. Requests may be issued concurrently; replies are matched by request id and watch
    events are queued on :attr:`events` as (path, token)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Packet]] = {}
        self.events: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._broken: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._receive())

    @classmethod
    async def connect(cls, path: str, timeout: float = 30.0) -> AsyncClient:
        # A unix socket whose listen backlog is full refuses a non-blocking connect with EAGAIN, which asyncio
        # would take for "in progress" and then report as connected (oxenstored listens with a tiny
        # backlog): retry until the daemon has room.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.001
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
                break
            except BlockingIOError:
                sock.close()
                if loop.time() > deadline:
                    raise TimeoutError(f"{path}: the daemon accepts no connection") from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            except BaseException:
                sock.close()
                raise
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()

    async def _receive(self) -> None:
        framing = PacketReader()
        try:
            while True:
                data = await self._reader.read(65536)
                if not data:
                    break
                for packet in framing.feed(data):
                    if packet.op == Op.WATCH_EVENT:
                        path, token, _ = packet.payload.split(b"\0", 2)
                        self.events.put_nowait((path.decode(), token.decode()))
                        continue
                    future = self._waiting.pop(packet.req_id, None)
                    if future is not None and not future.done():
                        future.set_result(packet)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a broken connection must fail the requests, not hang them
            self._broken = err
        finally:
            self._broken = self._broken or ConnectionError("the daemon closed the connection")
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"connection lost: {self._broken!r}"))
            self._waiting.clear()

    async def request(self, op: int, payload: bytes, tx_id: int = 0) -> bytes:
        """Send a request; return the reply payload or raise ClientError."""
        if self._broken is not None:
            raise ConnectionError(f"connection lost: {self._broken!r}")
        req_id = next(self._ids)
        future: asyncio.Future[Packet] = asyncio.get_running_loop().create_future()
        self._waiting[req_id] = future
        self._writer.write(HEADER.pack(op, req_id, tx_id, len(payload)) + payload)
        reply = await future
        if reply.op == Op.ERROR:
            raise ClientError(reply.payload.rstrip(b"\0").decode("ascii", "replace"), op)
        return reply.payload

    @staticmethod
    def _args(*items: str) -> bytes:
        return b"".join(item.encode() + b"\0" for item in items)

    async def read(self, path: str, tx_id: int = 0) -> bytes:
        return await self.request(Op.READ, self._args(path), tx_id)

    async def write(self, path: str, value: str | bytes, tx_id: int = 0) -> None:
        data = value.encode() if isinstance(value, str) else value
        await self.request(Op.WRITE, path.encode() + b"\0" + data, tx_id)

    async def mkdir(self, path: str, tx_id: int = 0) -> None:
        await self.request(Op.MKDIR, self._args(path), tx_id)

    async def rm(self, path: str, tx_id: int = 0) -> None:
        await self.request(Op.RM, self._args(path), tx_id)

    async def directory(self, path: str, tx_id: int = 0) -> list[str]:
        payload = await self.request(Op.DIRECTORY, self._args(path), tx_id)
        return [name.decode() for name in payload.split(b"\0") if name]

    async def set_perms(self, path: str, perms: list[str], tx_id: int = 0) -> None:
        await self.request(Op.SET_PERMS, self._args(path, *perms), tx_id)

    async def watch(self, path: str, token: str) -> None:
        await self.request(Op.WATCH, self._args(path, token))

    async def unwatch(self, path: str, token: str) -> None:
        await self.request(Op.UNWATCH, self._args(path, token))

    async def start(self) -> int:
        return int((await self.request(Op.TRANSACTION_START, b"\0")).rstrip(b"\0"))

    async def end(self, tx_id: int, commit: bool = True) -> None:
        await self.request(Op.TRANSACTION_END, b"T\0" if commit else b"F\0", tx_id)


__all__ = ["AsyncClient", "ClientError", "Packet"]
