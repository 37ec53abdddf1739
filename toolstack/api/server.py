"""Running the API: open the toolstack, load or create the token, serve with uvicorn."""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import re
from urllib.parse import quote, quote_plus

import uvicorn
import uvicorn.config

from toolstack import logs
from toolstack.api.app import create_app
from toolstack.api.auth import load_or_create_token
from toolstack.api.deps import ApiSettings
from toolstack.ops import Toolstack
from toolstack.users import read_users

log = logging.getLogger("toolstack.api")

# Container allocations between two collections of the youngest generation (CPython's default is 700).
GC_YOUNG_THRESHOLD = 10_000


def tune_gc_for_serving() -> None:
    """Set the cyclic garbage collector up for a long-running server with a large heap.

    What start-up allocated (modules, the app, the toolstack's caches so far) is frozen out of the
    collector's scans, and the youngest generation is collected less often: most of the server's garbage is
    freed by reference counting anyway. Under create+start load the collector otherwise took ~5% of the
    server's CPU, with full collections of ~70 ms that stalled every request in flight.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


REDACTED = "[redacted]"
# Query parameters whose values are secrets by their names (a client may put a token in the URL, where it
# does not work but would land in the access log): token, access_token, api_key, password...
_SECRET_PARAMETER = re.compile(r"(?i)([?&;][^=&;#\s]*(?:token|key|secret|passw|auth)[^=&;#\s]*=)[^&;#\s]*")


class RedactSecrets(logging.Filter):
    """Rewrites a log record's arguments so that no secret reaches the log: the server's token wherever it
    appears (as sent, or percent-encoded), and the value of any query parameter named like a credential.

    Installed on uvicorn's access logger, whose lines hold the request's path with its query string.
    """

    def __init__(self, token: str | None) -> None:
        super().__init__()
        forms = {token, quote(token, safe=""), quote_plus(token)} if token else set()
        self._forms = sorted(forms, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for form in self._forms:
            text = text.replace(form, REDACTED)
        return _SECRET_PARAMETER.sub(lambda match: match.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = self.redact(record.msg)
        return True


def _drop_color_message(record: logging.LogRecord) -> bool:
    """uvicorn's terminal-coloured copy of a message: noise in a JSON line."""
    record.__dict__.pop("color_message", None)
    return True


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    ts: Toolstack,
    token_file: str,
    host: str = "127.0.0.1",
    port: int = 8427,
    settings: ApiSettings | None = None,
    log_level: str = "info",
    announce: bool = True,
    users_file: str | None = None,
    log_format: str = "text",
) -> None:
    """Serve the API until interrupted.

    With a users file (``toolstack token add``), its users' tokens are the valid ones; without, the token is
    read from (or created in) ``token_file``. Only the files' paths are ever printed or logged, never a token
    (nor one sent in a URL: see RedactSecrets).

    Args:
        log_format: "text" (uvicorn's own lines) or "json" (every line, uvicorn's included, one JSON object
            by :class:`toolstack.logs.JsonFormatter`, with the request's user and the task).

    Raises:
        TokenFileError: The token file cannot be used.
        UsersFileError: The users file cannot be used.
    """
    token: str | None = None
    if users_file is not None and os.path.lexists(users_file):
        read_users(users_file)  # refuse to start on an unusable file, rather than refuse every request
        where = f"users in {users_file}"
    else:
        token, created = load_or_create_token(token_file)
        where = f"{'created a new token in' if created else 'token in'} {token_file}"
    settings = settings or ApiSettings()
    app = create_app(ts, token, settings, users_file=users_file)
    if announce:
        origin = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        print(f"toolstack serve: {origin}/ ({where}; open {origin}/#token=<token>)", flush=True)
    if not is_loopback(host):
        log.warning("serving on %s, not loopback: the token crosses the network in clear text", host)
    if log_format == "json":
        # uvicorn's own handlers and formats off: its loggers propagate to the root's JSON handler.
        logs.configure(logging.getLevelNamesMapping()[log_level.upper()], "json")
    config = uvicorn.Config(
        app,
        log_config=None if log_format == "json" else uvicorn.config.LOGGING_CONFIG,
        host=host,
        port=port,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=2,
        # A console's frames are keystrokes: the request body limit bounds them too.
        ws_max_size=settings.max_body_bytes,
    )
    # After uvicorn.Config: making it configures logging.
    logging.getLogger("uvicorn.access").addFilter(RedactSecrets(token))
    if log_format == "json":
        # Without its config uvicorn adds no handler: its loggers reach the root's JSON handler.
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).propagate = True
            logging.getLogger(name).addFilter(_drop_color_message)
    tune_gc_for_serving()
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        # uvicorn has shut down gracefully by now: a stop, not an abort (no "Aborted!" line in a JSON log).
        log.info("stopped by an interrupt")
