"""``toolstack serve``: the HTTP API and web page (also ``python -m toolstack.api``).

This module imports only click: FastAPI and uvicorn are imported when the command runs, so the rest of the
CLI works where they are not installed.
"""

from __future__ import annotations

import os

import click

from toolstack.cli.config import LOG_LEVELS

XENSTORE = "xenstore.prom"  # xenstored's default metrics file, beside its default repository xenstore.git
# Where toolstack-xenstored.service writes it: that root-run unit's own state directory (packaging/systemd).
XENSTORED_UNIT_TEXTFILE = "/var/lib/toolstack-xenstored/xenstore.prom"


def default_textfiles(repo: str) -> tuple[str, ...]:
    """The textfiles ``serve`` appends when none is named, each only if it exists: the agent's default file
    beside ``repo``, xenstored's beside its default repository in the same directory, and the file the
    systemd unit of xenstored writes (tests/test_packaging.py checks the units against these)."""
    from toolstack.metrics import agent_metrics_file

    return (agent_metrics_file(repo), os.path.join(os.path.dirname(repo), XENSTORE), XENSTORED_UNIT_TEXTFILE)


@click.command("serve")
@click.option("--repo", type=click.Path(), default=None, help="State repository [the toolstack's --repo]")
@click.option("--driver", default=None, help="Hypervisor URI [the toolstack's --driver]")
@click.option("--host", "bind_host", default=None, help="Address to listen on [serve.bind, 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="[serve.port, 8427]")
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Bearer token file, created (mode 0600) on first start [serve.token_file, <repo>.api-token]",
)
@click.option(
    "--users-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Named users' tokens (`toolstack token add`); once it exists, the token file is not used "
    "[serve.users_file, <repo>.api-users]",
)
@click.option("--max-body", type=click.IntRange(1024), default=None, help="Bytes [serve.max_body, 65536]")
@click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None, help="[serve.log_level, info]")
@click.option(
    "--metrics-textfile",
    "metrics_textfiles",
    multiple=True,
    type=click.Path(),
    help="Append this Prometheus textfile (a directory: its *.prom files) to /metrics: xenstored's "
    "--metrics-file, the agent's; repeatable [serve.metrics_textfiles; else the agent's and xenstored's "
    "default files beside the repo, if there]",
)
@click.pass_context
def serve(
    ctx: click.Context,
    repo: str | None,
    driver: str | None,
    bind_host: str | None,
    port: int | None,
    token_file: str | None,
    users_file: str | None,
    max_body: int | None,
    log_level: str | None,
    metrics_textfiles: tuple[str, ...],
) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json) and the web page at / (give it the token as #token=...).

    The global --log-format json makes every line, uvicorn's too, one JSON object with the request's user
    and the task.

    Note: this command's --host is the address to listen on; the toolstack's own --host (before `serve`)
    is this host's name in the state repository. Options not given come from the config files' [serve]
    table (see `toolstack.cli.config`).
    """
    from toolstack.api.auth import TokenFileError, default_token_file
    from toolstack.api.deps import ApiSettings
    from toolstack.api.server import serve as run_server
    from toolstack.cli.config import default_driver, default_host, default_repo, operator_identity, settings
    from toolstack.errors import ToolstackError
    from toolstack.ops import Toolstack
    from toolstack.users import UsersFileError, default_users_file

    parent = ctx.find_root().obj  # the toolstack group's options, when run as `toolstack ... serve`
    repo = os.path.abspath(repo or getattr(parent, "repo", None) or default_repo())
    driver_uri = driver or getattr(parent, "driver_uri", None) or default_driver(repo)
    author = getattr(parent, "author", None) or operator_identity()
    host = getattr(parent, "host", None) or default_host()
    configured = settings().serve
    textfiles = metrics_textfiles or configured.metrics_textfiles or ()
    # Unconfigured: where the agent and xenstored write by default, and where the systemd units make them.
    beside = () if textfiles else default_textfiles(repo)
    try:
        ts = Toolstack.open(repo, driver_uri, host=host, author=author)
    except ToolstackError as err:
        raise click.ClickException(str(err)) from err
    try:
        run_server(
            ts,
            token_file or configured.token_file or default_token_file(repo),
            host=bind_host or configured.bind or "127.0.0.1",
            port=port if port is not None else configured.port if configured.port is not None else 8427,
            settings=ApiSettings(
                max_body_bytes=max_body or configured.max_body or 64 * 1024,
                metrics_textfiles=tuple(os.path.abspath(path) for path in textfiles),
                optional_textfiles=beside,
            ),
            log_level=log_level or configured.log_level or "info",
            users_file=users_file or configured.users_file or default_users_file(repo),
            log_format=getattr(parent, "log_format", None) or "text",
        )
    except (TokenFileError, UsersFileError) as err:
        raise click.ClickException(str(err)) from err
    finally:
        ts.close()
