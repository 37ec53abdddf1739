"""CLI commands for sync between hosts and clones: pull and push (registered on :data:`toolstack.cli.main`)."""

from __future__ import annotations

import click

from toolstack.cli import Context, handled, main, pass_ctx
from toolstack.output import emit


@main.command("pull")
@click.option("--remote", default="origin", show_default=True)
@click.option("--url", default=None, help="Set the remote's URL (recorded in the repository's config)")
@click.option("--push/--no-push", "push_back", default=False, help="Push main back afterwards")
@click.option("--no-reconcile", is_flag=True, help="Only merge; leave the hypervisor alone")
@pass_ctx
@handled
def pull_command(c: Context, remote: str, url: str | None, push_back: bool, no_reconcile: bool) -> None:
    """Merge the remote's main (GitOps edits included), validate it, and reconcile the hypervisor."""
    from toolstack.sync import pull

    result = pull(c.toolstack(), remote, url, push=push_back, reconcile=not no_reconcile)
    lines = [f"main: {(result.before or '-')[:12]} -> {(result.after or '-')[:12]}"]
    lines += [f"rejected {uuid}: {error}" for uuid, error in result.rejected.items()]
    if result.plan is not None:
        lines += [action.describe() for action in result.plan.actions]
    if result.pushed:
        lines.append(f"pushed main to {remote}")
    emit(result.to_dict(), c.json, "\n".join(lines))


@main.command("push")
@click.option("--remote", default="origin", show_default=True)
@click.option("--url", default=None, help="Set the remote's URL (recorded in the repository's config)")
@click.option("--force", is_flag=True, help="Replace the remote's main even if that discards its commits")
@pass_ctx
@handled
def push_command(c: Context, remote: str, url: str | None, force: bool) -> None:
    """Publish main to a remote (refused if the remote has commits main lacks, unless --force)."""
    from toolstack.sync import push

    head = push(c.toolstack(create=False), remote, url, force=force)
    emit({"remote": remote, "main": head}, c.json, f"pushed main ({head[:12]}) to {remote}")
