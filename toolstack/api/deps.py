"""What routes share: the toolstack, the operation workers, the token and the settings of one server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from toolstack.api.identity import Directory
from toolstack.api.jobs import OperationJobs
from toolstack.ops import Toolstack


@dataclass(frozen=True)
class ApiSettings:
    """Tunables of one server.

    Attributes:
        max_body_bytes: Larger request bodies get 413.
        default_wait: Seconds an operation request waits for the outcome before answering 202 with the task.
        max_wait: The largest ``wait`` a client may ask for.
        events_poll: Seconds between checks of main in an event stream.
        events_heartbeat: Seconds between SSE comments that keep an idle stream (and its proxies) alive.
        max_consoles: Console WebSockets attached at once (each holds a reader thread); more are refused.
        console_auth_timeout: Seconds a console WebSocket may take to send its token.
        metrics_textfiles: Other processes' Prometheus textfiles (or directories of ``*.prom``) that
            ``/metrics`` appends: xenstored's, the agent's.
        optional_textfiles: Textfiles appended when they exist, and not mentioned when they do not (where the
            agent and xenstored write by default).
    """

    max_body_bytes: int = 64 * 1024
    default_wait: float = 10.0
    max_wait: float = 60.0
    events_poll: float = 0.2
    events_heartbeat: float = 15.0
    max_consoles: int = 32
    console_auth_timeout: float = 10.0
    metrics_textfiles: tuple[str, ...] = ()
    optional_textfiles: tuple[str, ...] = ()


@dataclass
class ApiState:
    ts: Toolstack
    directory: Directory
    settings: ApiSettings = field(default_factory=ApiSettings)
    jobs: OperationJobs = field(default_factory=OperationJobs)
    # Console WebSockets attached now; only the event loop's thread counts them.
    consoles: int = 0
    # Main's head as of the last VM read made in a worker thread: the VM log index (ETags) holds it, so a
    # read while main is still there has no indexing to do (see routes/vms.py's get_vm).
    indexed_head: str | None = None


# Async, though they only read an attribute: FastAPI runs a plain ``def`` dependency in a worker thread, a
# hop per dependency per request.
async def api_state(request: Request) -> ApiState:
    return request.app.state.api


async def toolstack(request: Request) -> Toolstack:
    return request.app.state.api.ts


State = Annotated[ApiState, Depends(api_state)]
TS = Annotated[Toolstack, Depends(toolstack)]
