"""``/browser/``: the page that runs the store itself in the browser (issue 22), served as plain files.

The page needs no token to be served and holds no secret, like ``/``. Its runtime (Pyodide, dulwich's wheel,
the store as a zip) is in ``toolstack/browser/vendor/``, made by ``make browser``; without it the page says
so. Its Content-Security-Policy is the main page's plus ``'wasm-unsafe-eval'``: Pyodide compiles
WebAssembly, which nothing else on this origin does.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

BROWSER_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "browser"
)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data:; frame-ancestors 'none'"
)


class BrowserFiles(StaticFiles):
    """Static files with the page's own CSP; cached by the browser until they change (Pyodide is 13 MB)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount(app: FastAPI) -> None:
    """Serve the page at ``/browser/``."""
    app.mount("/browser", BrowserFiles(directory=BROWSER_DIR, html=True), name="browser")
