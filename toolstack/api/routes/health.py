"""The health check (no token needed) and the web page's files."""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import FileResponse

from toolstack.api.schemas import Health

router = APIRouter(tags=["health"])

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")


@router.get("/health", response_model=Health)
async def health() -> Health:
    """Whether the server answers. It needs no token and says nothing about the state."""
    return Health(status="ok")


@router.get("/", include_in_schema=False)
def page() -> FileResponse:
    """The web page. It holds no secret: it asks for the token (or reads it from ``#token=...``)."""
    return FileResponse(os.path.join(STATIC_DIR, "index.html"), media_type="text/html")
