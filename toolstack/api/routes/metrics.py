"""``GET /metrics``: this server's metrics for Prometheus (behind the token; a read-only user suffices), and
the textfiles of the daemons that serve no HTTP (:mod:`toolstack.textfiles`)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from toolstack import metrics, textfiles
from toolstack.api.deps import State
from toolstack.api.errors import error_responses

router = APIRouter(tags=["metrics"])


# Declared with the default (JSON) response class so that its errors are documented as the JSON they are;
# the metrics themselves are text, as Prometheus reads them.
@router.get(
    "/metrics",
    response_model=None,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **error_responses()},
)
def get_metrics(state: State) -> PlainTextResponse:
    """Operations by kind and outcome, their durations, commits, merge conflicts, busy refusals, drift found
    and reconcile durations, counted by this server process since it started, in Prometheus's text format;
    then the textfiles it was given (``--metrics-textfile``): xenstored's requests, the agent's rounds.

    A textfile that cannot be read or checked is left out, with a comment and ``toolstack_textfile_up 0``.
    """
    own = metrics.exposition()
    settings = state.settings
    text = own + textfiles.exposition(settings.metrics_textfiles, own, optional=settings.optional_textfiles)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
