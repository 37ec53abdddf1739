"""``toolstack token add|list|revoke``: the API's named users and their tokens (see :mod:`toolstack.users`).

The users file is beside the repository, unless ``--users-file`` or the config files' ``[serve] users_file``
names another (``serve`` reads the same one).
Once it exists, ``toolstack serve`` accepts its users' tokens only, not the single token of ``--token-file``.
"""

from __future__ import annotations

import click

from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit, table, when

# As toolstack.users's, not imported from there: `toolstack --help` imports this module, and must not load
# the layers below the CLI (tests/toolstack/test_cli_package.py).
OPERATOR = "operator"
ROLES = (OPERATOR, "read-only")

_users_file = click.option(
    "--users-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="The users file [serve.users_file, <repo>.api-users, beside the repository]",
)


def _path(c: Context, users_file: str | None) -> str:
    from toolstack.cli.config import settings
    from toolstack.users import default_users_file

    return users_file or settings().serve.users_file or default_users_file(c.repo)


@click.group("token")
def token() -> None:
    """The API's named users: each has its own token and a role (operator or read-only)."""


@token.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default=OPERATOR, show_default=True)
@click.option("--email", default=None, help="The email of the user's commits [NAME@<host>]")
@_users_file
@pass_ctx
@handled
def add_command(c: Context, name: str, role: str, email: str | None, users_file: str | None) -> None:
    """Add user NAME and print its new token, once: only its hash is kept."""
    from toolstack.users import add_user

    path = _path(c, users_file)
    try:
        new_token = add_user(path, name, role, email)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None
    emit(
        {"name": name, "role": role, "email": email, "token": new_token, "users_file": path},
        c.json,
        new_token,
    )
    if not c.json:
        click.echo(f"user {name} ({role}) added to {path}: the token above is shown only once", err=True)


@token.command("list")
@_users_file
@pass_ctx
@handled
def list_command(c: Context, users_file: str | None) -> None:
    """The users, revoked ones included (their tokens never shown: only hashes are kept)."""
    from toolstack.users import read_users

    path = _path(c, users_file)
    try:
        users = sorted(read_users(path).values(), key=lambda user: user.name)
    except FileNotFoundError:
        users = []
    rows = [
        [user.name, user.role, user.email or "-", when(user.created), when(user.revoked)] for user in users
    ]
    emit(
        [
            {"name": u.name, "role": u.role, "email": u.email, "created": u.created, "revoked": u.revoked}
            for u in users
        ],
        c.json,
        table(["name", "role", "email", "created", "revoked"], rows),
    )


@token.command("revoke")
@click.argument("name")
@_users_file
@pass_ctx
@handled
def revoke_command(c: Context, name: str, users_file: str | None) -> None:
    """Revoke NAME's token: a running server refuses it (401) from its next request."""
    from toolstack.users import revoke_user

    path = _path(c, users_file)
    user = revoke_user(path, name)
    emit({"name": user.name, "revoked": user.revoked}, c.json, f"revoked {user.name}")
