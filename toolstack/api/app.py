"""The application factory: ``create_app(toolstack, token)`` gives the FastAPI app of ``toolstack serve``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from toolstack.api.auth import require_token
from toolstack.api.deps import ApiSettings, ApiState
from toolstack.api.errors import install_error_handlers
from toolstack.api.identity import Directory, Identify
from toolstack.api.jobs import OperationJobs
from toolstack.api.middleware import BodyLimit, SecurityHeaders
from toolstack.api.routes import (
    actions,
    browser,
    console,
    devices,
    docs,
    events,
    git,
    health,
    history,
    metrics,
    plans,
    tasks,
    vmfiles,
    vms,
)
from toolstack.ops import Toolstack

DESCRIPTION = """The git-toolstack over HTTP: VMs, their lifecycle and devices, tasks, history with diffs,
rollback and reconcile with dry-run plans, and an event stream.

Every route but `/health` and the web page needs `Authorization: Bearer <token>`, the token the server wrote
to its `--token-file` on first start. Writes that name a VM accept `If-Match: <the VM's ETag>`: the ETag is
the commit where the VM last changed, and a stale one gets 412. Operations answer 200 (201 for a create) with
their task once finished, or 202 with the running task (`Location: /tasks/{id}`) after `wait` seconds.
"""


def create_app(
    ts: Toolstack, token: str | None, settings: ApiSettings | None = None, *, users_file: str | None = None
) -> FastAPI:
    """The API over one toolstack (its store and driver must be thread-safe: requests run in threads).

    Args:
        ts: The toolstack.
        token: The single bearer token (an operator named after the toolstack's author), valid while there
            is no users file; None: none.
        settings: Limits and timings.
        users_file: The named users' file (see :mod:`toolstack.users`): once it exists, its users' tokens
            are the only valid ones.
    """
    if token is not None and len(token) < 16:
        raise ValueError("the API token must have at least 16 characters")
    if token is None and users_file is None:
        raise ValueError("the API needs a token or a users file")
    settings = settings or ApiSettings()
    directory = Directory(users_file, token, ts.author, ts.host)
    jobs = OperationJobs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.close()

    app = FastAPI(
        title="git-toolstack",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        # The spec is served below, behind the token; /docs is Swagger UI from local files (routes/docs.py).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = ApiState(ts=ts, directory=directory, settings=settings, jobs=jobs)
    install_error_handlers(app)
    authenticated = [Depends(require_token)]
    for module in (vms, vmfiles, actions, devices, tasks, history, plans, events, metrics, git):
        app.include_router(module.router, dependencies=authenticated)
    app.include_router(health.router)
    # A WebSocket cannot carry the bearer header from a browser: the route checks the token itself.
    app.include_router(console.router)
    app.include_router(docs.router)

    @app.get("/openapi.json", include_in_schema=False, dependencies=authenticated)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    app.mount("/static", StaticFiles(directory=health.STATIC_DIR), name="static")
    app.add_middleware(Identify, directory=directory)
    browser.mount(app)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
