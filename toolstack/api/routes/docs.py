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

# The main page's policy, as is: Swagger UI's bundle runs no inline script, and its components style
# elements through the DOM (which the policy allows), not through style attributes in markup. A browser test
# checks that /docs logs no refusal.
DOCS_CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"


@router.get("/docs", include_in_schema=False)
def docs() -> FileResponse:
    """The Swagger UI page (no token needed to load it: it asks for none and shows nothing without one)."""
    return FileResponse(
        os.path.join(STATIC_DIR, "docs.html"),
        media_type="text/html",
        headers={"Content-Security-Policy": DOCS_CSP},
    )
