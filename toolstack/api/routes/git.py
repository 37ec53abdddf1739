"""The state repository over git's HTTP protocols, behind the token (issue 22): ``/git``.

- Read: git's smart HTTP (``git clone``/``fetch`` with ``http.extraHeader='Authorization: Bearer ...'``) and
  the dumb protocol's files (what the browser page clones with ``fetch``), both served by dulwich's
  HTTP application over the repository on disk (read-only: it is given no receive-pack).
- Write: ``git-receive-pack``, answered here, not by dulwich: a push never moves a ref itself. Its objects
  are written to the store, then :func:`toolstack.receive.accept_push` validates the pushed VMs as a GitOps
  edit and merges into main, or refuses with the error, which git shows the pusher
  (``! [remote rejected] main -> main (invalid VM configuration: web1: ...)``).

The API has one token and no user roles: whoever holds it may read and push, as with every other route.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from store.dumbhttp import read_pack
from store.smarthttp import FLUSH, ZERO, pkt_line, read_pkt_lines
from toolstack.api.deps import TS
from toolstack.ops import Toolstack
from toolstack.receive import MAIN_REF, PushRefused, accept_push

router = APIRouter(prefix="/git", tags=["git"], include_in_schema=False)
log = logging.getLogger(__name__)

RECEIVE_CAPABILITIES = b"report-status no-thin ofs-delta agent=git-toolstack"


def _dulwich(
    ts: Toolstack, method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> Response:
    """One request to dulwich's WSGI application, called in this thread (the bodies are small)."""
    from dulwich.repo import Repo
    from dulwich.server import DictBackend, UploadPackHandler
    from dulwich.web import HTTPGitApplication

    repo = Repo(ts.store.gitdir)
    try:
        app = HTTPGitApplication(DictBackend({"/": repo}), handlers={b"git-upload-pack": UploadPackHandler})
        environ = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "SERVER_NAME": "toolstack",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": io.StringIO(),
            "wsgi.url_scheme": "http",
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in headers.items():
            if name not in ("content-type", "content-length"):
                environ["HTTP_" + name.upper().replace("-", "_")] = value
        started: dict[str, object] = {}
        written: list[bytes] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            started["status"] = int(status.split()[0])
            started["headers"] = response_headers
            return written.append  # WSGI's write(): dulwich writes pkt-lines through it

        output: Iterable[bytes] = app(environ, start_response)
        content = b"".join(output)
        content = b"".join(written) + content
    finally:
        repo.close()
    kept = {k: v for k, v in started.get("headers", []) if k.lower() in ("content-type",)}  # type: ignore[union-attr]
    return Response(content, status_code=int(started.get("status", 500)), headers=kept)  # type: ignore[arg-type]


def _advertise_receive(ts: Toolstack) -> bytes:
    head = ts.main.head
    first = f"{head} {MAIN_REF}" if head else f"{ZERO} capabilities^{{}}"
    return (
        pkt_line(b"# service=git-receive-pack\n")
        + FLUSH
        + pkt_line(first.encode() + b"\0" + RECEIVE_CAPABILITIES + b"\n")
        + FLUSH
    )


def _receive(ts: Toolstack, body: bytes) -> bytes:
    """Apply a receive-pack request; the ``report-status`` answer."""
    commands: list[tuple[str, str, str]] = []
    end = 0
    for line, end in read_pkt_lines(body):  # noqa: B007 - ``end`` is where the pack starts
        if line is None:
            break
        old, new, ref = line.split(b"\0")[0].rstrip(b"\n").decode().split(" ", 2)
        commands.append((old, new, ref))
    pack = body[end:]
    try:
        if pack:
            ts.store.objects.write_objects(read_pack(pack, bases=ts.store.objects))
    except Exception as err:
        log.warning("a git push sent an unreadable pack: %s", err)
        reason = str(err).replace("\n", " ")[:200] or type(err).__name__
        return pkt_line(f"unpack {reason}\n".encode()) + FLUSH
    report = [pkt_line(b"unpack ok\n")]
    for old, new, ref in commands:
        try:
            outcome = accept_push(ts, ref, old, new)
        except PushRefused as err:
            reason = " ".join(str(err).split())
            log.info("git push to %s refused: %s", ref, reason)
            report.append(pkt_line(f"ng {ref} {reason}\n".encode()))
            continue
        log.info("git push to %s accepted: main at %s, VMs %s", ref, outcome.head, outcome.changed)
        report.append(pkt_line(f"ok {ref}\n".encode()))
    return b"".join(report) + FLUSH


@router.get("/info/refs")
async def info_refs(request: Request, ts: TS, service: str | None = None) -> Response:
    """The refs: smart (``?service=git-upload-pack|git-receive-pack``) or dumb (no service)."""
    if service == "git-receive-pack":
        return Response(
            await run_in_threadpool(_advertise_receive, ts),
            media_type="application/x-git-receive-pack-advertisement",
        )
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await run_in_threadpool(_dulwich, ts, "GET", "/info/refs", request.url.query, headers, b"")


@router.post("/git-upload-pack")
async def upload_pack(request: Request, ts: TS) -> Response:
    """git's upload-pack: what ``git fetch`` asks for, as a pack."""
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await run_in_threadpool(_dulwich, ts, "POST", "/git-upload-pack", "", headers, body)


@router.post("/git-receive-pack")
async def receive_pack(request: Request, ts: TS) -> Response:
    """git's receive-pack: a push to main, validated and merged by the toolstack (or refused)."""
    body = await request.body()
    return Response(
        await run_in_threadpool(_receive, ts, body), media_type="application/x-git-receive-pack-result"
    )


@router.get("/{path:path}")
async def dumb_file(path: str, request: Request, ts: TS) -> Response:
    """The dumb protocol's files: ``HEAD``, ``objects/info/packs``, packs, their indexes, loose objects."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await run_in_threadpool(_dulwich, ts, "GET", "/" + path, "", headers, b"")
