"""Every error the layers raise, mapped to one HTTP status and one JSON shape (:class:`ErrorOut`), here only.

====================================================  ======  ========================
error                                                 status  ``error`` code
====================================================  ======  ========================
request body / query fails validation                 422     invalid_request
a malformed header (e.g. an empty If-Match)           400     invalid_header
``InvalidInput`` (the toolstack refused a value)      422     invalid_input
``VMNotFound``, unknown commit or branch, task        404     not_found
``VMExists``                                          409     exists
``OperationInProgress`` (the VM is busy)              409     busy (+ the running task)
``OperationConflict`` / ``store.Conflict``            409     conflict (+ the conflicts)
``DestructivePlanRefused`` (no ``confirm: true``)     409     confirmation_required (+ the plan)
``OperationFailed``: the hypervisor refused the state 409     operation_refused
``OperationFailed``: an invalid argument              422     operation_refused
``OperationFailed``: anything else                    502     operation_failed
``PreconditionFailed`` (If-Match is stale)            412     precondition_failed
``OperationFailed`` caused by ``StaleVersion``        412     precondition_failed (+ the task)
``EventsLost`` / ``HistoryLost``                      410     events_lost
``TooManyRetries``, lock timeouts (contention)        503     busy_repository
any other driver error                                502     hypervisor_error
any other toolstack or store error                    400     bad_request
====================================================  ======  ========================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from drivers import DriverError
from drivers.errors import DomainNotFound, InvalidArgument, InvalidState
from store import Conflict, ConflictEntry, HistoryLost, LockTimeout, NotFound, StoreError, TooManyRetries
from toolstack.api.schemas import ConflictOut, ErrorOut, FieldError
from toolstack.api.views import plan_out
from toolstack.errors import (
    DestructivePlanRefused,
    InvalidInput,
    OperationConflict,
    OperationFailed,
    OperationInProgress,
    StaleVersion,
    ToolstackError,
    VMExists,
    VMNotFound,
)
from toolstack.events import EventsLost

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the API itself decides (a missing task, a stale If-Match, ...)."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, **extra: Any) -> None:
        self.extra = extra
        super().__init__(message)


class NotFoundError(ApiError):
    status = 404
    code = "not_found"


class PreconditionFailed(ApiError):
    """If-Match names a version the object no longer has."""

    status = 412
    code = "precondition_failed"


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def conflict_list(conflicts: Sequence[ConflictEntry]) -> list[ConflictOut]:
    return [
        ConflictOut(
            path=c.path, reason=c.reason, base=_text(c.base), ours=_text(c.ours), theirs=_text(c.theirs)
        )
        for c in conflicts
    ]


def _classify(err: Exception) -> tuple[int, ErrorOut]:
    """The status and body for any error the layers raise."""
    message = str(err)
    if isinstance(err, ApiError):
        return err.status, ErrorOut(error=err.code, message=message, **err.extra)
    if isinstance(err, OperationInProgress):
        return 409, ErrorOut(
            error="busy", message=message, task=err.task, running_operation=err.running_operation
        )
    if isinstance(err, DestructivePlanRefused):
        return 409, ErrorOut(error="confirmation_required", message=message, plan=plan_out(err.plan, True))
    if isinstance(err, OperationConflict | Conflict):
        return 409, ErrorOut(error="conflict", message=message, conflicts=conflict_list(err.conflicts))
    if isinstance(err, OperationFailed):
        if isinstance(err.cause, StaleVersion):
            return PreconditionFailed.status, ErrorOut(
                error=PreconditionFailed.code, message=str(err.cause), task=err.task
            )
        if isinstance(err.cause, InvalidArgument):
            return 422, ErrorOut(error="operation_refused", message=message, task=err.task)
        if isinstance(err.cause, InvalidState | DomainNotFound):
            return 409, ErrorOut(error="operation_refused", message=message, task=err.task)
        return 502, ErrorOut(error="operation_failed", message=message, task=err.task)
    if isinstance(err, InvalidInput):
        return 422, ErrorOut(error="invalid_input", message=message)
    if isinstance(err, VMNotFound | NotFound):
        return 404, ErrorOut(error="not_found", message=message)
    if isinstance(err, VMExists):
        return 409, ErrorOut(error="exists", message=message)
    if isinstance(err, EventsLost | HistoryLost):
        return 410, ErrorOut(error="events_lost", message=message)
    if isinstance(err, TooManyRetries | LockTimeout):
        return 503, ErrorOut(error="busy_repository", message=message)
    if isinstance(err, DriverError):
        return 502, ErrorOut(error="hypervisor_error", message=message)
    if isinstance(err, ToolstackError | StoreError | ValueError):
        return 400, ErrorOut(error="bad_request", message=message)
    raise err


def error_response(status: int, body: ErrorOut) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


async def _handle_layer_error(request: Request, err: Exception) -> JSONResponse:
    status, body = _classify(err)
    if status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, body.message)
    return error_response(status, body)


async def _handle_validation(request: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)
    fields = [
        FieldError(loc=list(e.get("loc", ())), msg=str(e.get("msg", "")).removeprefix("Value error, "))
        for e in err.errors()
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in f.loc)}: {f.msg}" for f in fields)
    if fields and all(f.loc[:1] == ["header"] for f in fields):
        # A malformed header (an empty If-Match...) makes the request malformed (RFC 9110): 400. 422 is for
        # content (a body, a query) that is well formed but not acceptable.
        return error_response(400, ErrorOut(error="invalid_header", message=summary, fields=fields))
    return error_response(422, ErrorOut(error="invalid_request", message=summary, fields=fields))


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (OPTIONS always; a GET route serves HEAD too).

    Starlette's 405 names the methods of the first route that matched the path only, and a path often has
    several (``GET /vms`` and ``POST /vms``). Each method is tried against the routes, as routing would.
    """
    # The request's scope as the application got it (a mount rewrites root_path for what it serves).
    root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    scope = {"type": "http", "path": request.scope["path"], "root_path": root, "method": request.method}
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Mount):
            if route.matches(scope)[0] is Match.FULL:
                methods.update(("GET", "HEAD"))  # the only mount is the page's files, served by StaticFiles
            continue
        methods.update(m for m in _METHODS if route.matches({**scope, "method": m})[0] is Match.FULL)
    if "GET" in methods:
        methods.add("HEAD")
    return [m for m in _METHODS if m in methods] + ["OPTIONS"]


async def _handle_http(request: Request, err: Exception) -> Response:
    assert isinstance(err, StarletteHTTPException)
    headers = dict(err.headers or {})
    if err.status_code == 405:
        # RFC 9110: a 405 names every method the resource has, and OPTIONS asks for exactly that list. It
        # needs no token: it says which methods a path has (as the README does), nothing of the state.
        headers["Allow"] = ", ".join(allowed_methods(request))
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
    codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 403: "forbidden"}
    body = ErrorOut(error=codes.get(err.status_code, "http_error"), message=str(err.detail))
    response = error_response(err.status_code, body)
    response.headers.update(headers)
    return response


def install_error_handlers(app: FastAPI) -> None:
    """Route every error class above through :func:`_classify`."""
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    for cls in (ApiError, ToolstackError, StoreError, DriverError, ValueError):
        app.add_exception_handler(cls, _handle_layer_error)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for the error statuses a route can return (400/401/403/413/422 always)."""
    described = {
        400: "Malformed request (e.g. a body that is not JSON), or refused by the toolstack",
        401: "No bearer token",
        403: "Wrong bearer token",
        404: "No such VM, commit, branch or task",
        409: "Busy (the running task), conflict (the conflict list), exists, refused by the hypervisor, or "
        "a plan that stops or undefines domains sent without confirm (confirmation_required, with the plan)",
        410: "Events lost: the resume token was squashed away; resynchronise",
        412: "If-Match names a version the object no longer has",
        413: "Request body too large",
        422: "Validation error, naming the field",
        502: "The hypervisor failed",
        503: "The repository is contended; retry",
    }
    wanted = sorted({400, 401, 403, 413, 422, *statuses})
    return {status: {"model": ErrorOut, "description": described[status]} for status in wanted}
