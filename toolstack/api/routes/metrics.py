"""``GET /metrics``: this server's metrics for Prometheus (behind the token; a read-only user suffices)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from toolstack import metrics
from toolstack.api.errors import error_responses

router = APIRouter(tags=["metrics"])


# Declared with the default (JSON) response class so that its errors are documented as the JSON they are;
# the metrics themselves are text, as Prometheus reads them.
@router.get(
    "/metrics",
    response_model=None,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **error_responses()},
)
async def get_metrics() -> PlainTextResponse:
    """Operations by kind and outcome, their durations, commits, merge conflicts, busy refusals, drift found
    and reconcile durations, counted by this server process since it started, in Prometheus's text format.

    xenstored runs as a daemon of its own (``toolstack xenstored``): its requests are not counted here.
    """
    return PlainTextResponse(metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
