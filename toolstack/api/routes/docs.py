"""``/docs``: Swagger UI over the server's OpenAPI spec, from local files, behind the API token.

FastAPI's own docs page loads Swagger UI from a CDN, which the page's Content-Security-Policy (this origin
only) forbids and which an offline server cannot reach; the files are served from ``static/vendor/`` instead
(see its SOURCE.md). Like ``/``, the page itself holds no secret: its script takes the token the main page
stored for this tab (or ``#token=...``), fetches ``/openapi.json`` with it (that route needs the token), and
sends it with every "Try it out" request. Without a token it shows nothing of the API.
"""

from __future__ import annotations

import os

from fastapi import APIRouter
from fastapi.responses import FileResponse

from toolstack.api.routes.health import STATIC_DIR

router = APIRouter(tags=["docs"])


@router.get("/docs", include_in_schema=False)
def docs() -> FileResponse:
    """The Swagger UI page (no token needed to load it: it asks for none and shows nothing without one)."""
    # It gets the page's Content-Security-Policy (this origin only, nothing inline) from SecurityHeaders:
    # Swagger UI's bundle runs no inline script and styles elements through the DOM, which that allows.
    return FileResponse(os.path.join(STATIC_DIR, "docs.html"), media_type="text/html")
