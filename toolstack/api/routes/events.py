"""The event stream: ``GET /events?since=TOKEN`` as Server-Sent Events (410 if the token was squashed)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from toolstack import layout
from toolstack.api.deps import State
from toolstack.api.errors import error_responses
from toolstack.api.revisions import Revision
from toolstack.api.sse import event_stream, resume_token
from toolstack.events import events_since

router = APIRouter(tags=["events"])

_STREAM = {
    200: {
        "description": "Server-Sent Events: `id:` the commit id, `event:` the kind, `data:` the event (JSON)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


@router.get("/events", response_class=StreamingResponse, responses={**_STREAM, **error_responses(404, 410)})
async def events(
    request: Request,
    api: State,
    since: Annotated[Revision | None, Query(description="Resume after this token (a commit id).")] = None,
    follow: Annotated[bool, Query(description="Keep the stream open for new events.")] = True,
    limit: Annotated[
        int | None, Query(ge=1, le=100_000, description="At most this many past events.")
    ] = None,
    last_event_id: Annotated[Revision | None, Header()] = None,
) -> StreamingResponse:
    """VM events (created, started, stopped, config-changed, device-added, observed...) after a token.

    Without a token, a following stream starts at main's head (new events only) and a finite one
    (``follow=false``) gives the whole history. ``Last-Event-ID`` is used when ``since`` is not given.
    """
    store = api.ts.store
    token = resume_token(store, since if since is not None else last_event_id)
    if token is None and follow:
        token = store.branch(layout.MAIN).head
    first = await run_in_threadpool(events_since, store, token, limit)
    settings = api.settings
    stream = event_stream(
        request, store, first, token, follow, settings.events_poll, settings.events_heartbeat
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
