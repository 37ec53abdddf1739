"""``toolstack serve``: the HTTP API and web page (also ``python -m toolstack.api``).

This module imports only click: FastAPI and uvicorn are imported when the command runs, so the rest of the
CLI works where they are not installed.
"""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--repo", type=click.Path(), default=None, help="State repository [the toolstack's --repo]")
@click.option("--driver", default=None, help="Hypervisor URI [the toolstack's --driver]")
@click.option("--host", "bind_host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option("--port", type=click.IntRange(0, 65535), default=8427, show_default=True)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Bearer token file, created (mode 0600) on first start [beside the repo: <repo>.api-token]",
)
@click.option("--max-body", type=click.IntRange(1024), default=64 * 1024, show_default=True, help="Bytes")
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def serve(
    ctx: click.Context,
    repo: str | None,
    driver: str | None,
    bind_host: str,
    port: int,
    token_file: str | None,
    max_body: int,
    log_level: str,
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) and the web page at / (give it the token as #token=...).

    Note: this command's --host is the address to listen on; the toolstack's own --host (before `serve`)
    is this host's name in the state repository.
    """
    import os

    from toolstack.api.auth import TokenFileError, default_token_file
    from toolstack.api.deps import ApiSettings
    from toolstack.api.server import serve as run_server
    from toolstack.cli.config import default_driver, default_repo, operator_identity
    from toolstack.errors import ToolstackError
    from toolstack.ops import Toolstack

    parent = ctx.find_root().obj  # the toolstack group's options, when run as `toolstack ... serve`
    repo = os.path.abspath(repo or getattr(parent, "repo", None) or default_repo())
    driver_uri = driver or getattr(parent, "driver_uri", None) or default_driver(repo)
    author = getattr(parent, "author", None) or operator_identity()
    try:
        ts = Toolstack.open(repo, driver_uri, host=getattr(parent, "host", None), author=author)
    except ToolstackError as err:
        raise click.ClickException(str(err)) from err
    try:
        run_server(
            ts,
            token_file or default_token_file(repo),
            host=bind_host,
            port=port,
            settings=ApiSettings(max_body_bytes=max_body),
            log_level=log_level,
        )
    except TokenFileError as err:
        raise click.ClickException(str(err)) from err
    finally:
        ts.close()
