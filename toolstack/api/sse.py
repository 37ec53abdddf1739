"""Server-Sent Events from main's history (``toolstack.events``).

Every event carries the id of the commit that recorded it as its SSE ``id``, so that a client that reconnects
with ``Last-Event-ID`` resumes right after it. The events of one commit are written in one chunk.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from itertools import groupby

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from store import Store
from toolstack import layout
from toolstack.events import Event, events_since

_FULL_ID = re.compile(r"[0-9a-f]{40}")


def resume_token(store: Store, given: str | None) -> str | None:
    """A full commit id is taken as is (one squashed away is reported as lost events, not as unknown); any
    other revision is resolved (an unknown one raises UnknownCommit: 404)."""
    if given is None or _FULL_ID.fullmatch(given):
        return given
    return store.resolve(given)


def format_events(events: list[Event]) -> str:
    """SSE messages for events, oldest first."""
    lines = []
    for event in events:
        data = json.dumps(event.to_dict(), separators=(",", ":"))
        lines.append(f"id: {event.token}\nevent: {event.kind}\ndata: {data}\n\n")
    return "".join(lines)


async def event_stream(
    request: Request,
    store: Store,
    first: list[Event],
    token: str | None,
    follow: bool,
    poll: float,
    heartbeat: float,
) -> AsyncIterator[str]:
    """The stream: ``first`` (already read, so that a lost token was answered 410 before streaming began),
    then, if ``follow``, new events as main moves, until the client goes away."""
    head = store.branch(layout.MAIN).head
    yield f"retry: 2000\nevent: ready\ndata: {json.dumps({'head': head})}\n\n"
    for _, batch in groupby(first, key=lambda e: e.token):
        yield format_events(list(batch))
    if first:
        token = first[-1].token
    if not follow:
        return
    last_beat = time.monotonic()
    seen: str | None = None  # main may have moved since ``first`` was read: look once at once
    while not await request.is_disconnected():
        current = store.branch(layout.MAIN).head
        if current != seen:
            seen = current
            # Resume after the last event sent: no event is sent twice, none is skipped.
            events = await run_in_threadpool(events_since, store, token)
            for _, batch in groupby(events, key=lambda e: e.token):
                yield format_events(list(batch))
            if events:
                token = events[-1].token
        if time.monotonic() - last_beat >= heartbeat:
            last_beat = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll)
