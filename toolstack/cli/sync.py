"""CLI commands on the pool: init and clone, sync between hosts and clones (pull, push, gc), the agent."""

from __future__ import annotations

import click

from toolstack.cli.config import operator_identity
from toolstack.cli.context import Context, pass_ctx
from toolstack.cli.errors import handled
from toolstack.cli.output import emit
from toolstack.cli.plans import confirmation


@click.command("init")
@click.option("--name", default=None, help="The pool's name [the repository's directory name]")
@pass_ctx
@handled
def init_command(c: Context, name: str | None) -> None:
    """Create a pool: a new state repository whose root commit records the pool's id, name and time.

    The one command that creates a state repository; hosts and operators join with `toolstack clone`. In a
    repository made by an older release it adds the pool record (once, on one host; the others pull it).
    """
    from toolstack.pool import init_pool

    pool = init_pool(c.repo, name, c.author or operator_identity())
    emit(
        {"repo": c.repo, **pool.model_dump(mode="json")},
        c.json,
        f"initialized pool {pool.name} ({pool.id}) in {c.repo}",
    )


@click.command("clone")
@click.argument("url")
@click.argument("path", required=False)
@pass_ctx
@handled
def clone_command(c: Context, url: str, path: str | None) -> None:
    """Join a pool: clone its state repository from URL into PATH [--repo]. Writes nothing to the
    hypervisor: run `toolstack reconcile` (or an agent) afterwards."""
    import os

    from toolstack.pool import clone_pool

    target = os.path.abspath(path) if path else c.repo
    pool = clone_pool(url, target)
    emit(
        {"repo": target, "url": url, **pool.model_dump(mode="json")},
        c.json,
        f"cloned pool {pool.name} ({pool.id}) from {url} into {target}",
    )


@click.command("pull")
@click.option("--remote", default="origin", show_default=True)
@click.option("--url", default=None, help="Set the remote's URL (recorded in the repository's config)")
@click.option("--push/--no-push", "push_back", default=False, help="Push main back afterwards")
@click.option("--no-reconcile", is_flag=True, help="Only merge; leave the hypervisor alone")
@click.option(
    "--resync",
    is_flag=True,
    help="After the pool's history was rewritten by gc: keep main's local-only commits under refs/resync/, "
    "report them, reset main to the remote's main and reconcile",
)
@click.option(
    "--yes", "-y", is_flag=True, help="Apply a reconcile that stops or undefines domains without asking"
)
@pass_ctx
@handled
def pull_command(
    c: Context, remote: str, url: str | None, push_back: bool, no_reconcile: bool, resync: bool, yes: bool
) -> None:
    """Merge the remote's main (GitOps edits included), validate it, and reconcile the hypervisor.

    Exits 5 when it reverted invalid edits (each named: commit, author, path, error), 6 when the remote's
    history was rewritten by gc (nothing changed; run the command it names), 7 when pushing back would
    delete VMs that no operation deleted (nothing pushed), 8 when the reconcile would stop or undefine
    domains and was not confirmed (on a terminal it asks; else --yes): main is merged, the hypervisor is left
    as it was, the plan is printed and nothing is pushed.

    With --url into a missing or empty repository path, it clones the pool first (as `toolstack clone`)."""
    import os

    from toolstack.errors import RejectedEdits
    from toolstack.pool import clone_pool
    from toolstack.resync import resync as do_resync
    from toolstack.sync import pull

    if resync:
        if push_back:
            raise click.UsageError("--resync replaces main by the remote's: there is nothing to push back")
        done = do_resync(c.toolstack(), remote, url, reconcile=not no_reconcile, confirm=confirmation(yes))
        if done.pull is not None:
            lines = [f"nothing to resync: main shares history with {remote}/main; pulled it"]
            lines.append(f"main: {(done.before or '-')[:12]} -> {(done.after or '-')[:12]}")
        else:
            lines = [
                f"resynced with {remote}: main {(done.before or '-')[:12]} -> {(done.after or '-')[:12]}; "
                f"the old main is kept as {done.kept}",
                f"{len(done.local_only)} local-only commit(s) the squash did not fold in"
                + (":" if done.local_only else ""),
                *[f"  {e['commit'][:12]}  {e['author']}  {e['message']}" for e in done.local_only],
            ]
            if done.local_only:
                lines.append("re-apply a VM from one with `toolstack rollback COMMIT --vm NAME`")
        if done.plan is not None:
            lines += [action.describe() for action in done.plan.actions]
        emit(done.to_dict(), c.json, "\n".join(lines))
        if done.pull is not None and done.pull.rejections:
            raise RejectedEdits(remote, done.pull.rejections)
        return
    joining = url is not None and (not os.path.exists(c.repo) or not os.listdir(c.repo))
    if joining:
        clone_pool(url, c.repo)  # joining the pool: a clone, never a second root commit
    ts = c.toolstack()
    result = pull(
        ts,
        remote,
        url,
        push=push_back,
        reconcile=not no_reconcile,
        validate_all=joining,
        confirm=confirmation(yes),
    )
    lines = [f"main: {(result.before or '-')[:12]} -> {(result.after or '-')[:12]}"]
    lines += [f"rejected {r.describe()}" for r in result.rejections]
    if result.plan is not None:
        lines += [action.describe() for action in result.plan.actions]
        lines += [f"invalid: {i}" for i in result.plan.invalid]
    if result.pushed:
        lines.append(f"pushed main to {remote}")
    emit(result.to_dict(), c.json, "\n".join(lines))
    if result.rejections:
        raise RejectedEdits(remote, result.rejections)


@click.command("push")
@click.option("--remote", default="origin", show_default=True)
@click.option("--url", default=None, help="Set the remote's URL (recorded in the repository's config)")
@click.option(
    "--force", is_flag=True, help="Replace the remote's main even if that discards its commits or VMs"
)
@pass_ctx
@handled
def push_command(c: Context, remote: str, url: str | None, force: bool) -> None:
    """Publish main to a remote: refused if the remote has commits main lacks (exit 1), or if it would
    delete VMs from the remote that no operation deleted here (exit 7); --force does it anyway."""
    from toolstack.sync import push

    head = push(c.toolstack(), remote, url, force=force)
    emit({"remote": remote, "main": head}, c.json, f"pushed main ({head[:12]}) to {remote}")


@click.command("gc")
@click.option("--before", "before", help="A commit, or a date (YYYY-MM-DD[ HH:MM[:SS]])")
@click.option("--prune-archives", is_flag=True, help="Also drop archived history (then git gc reclaims it)")
@click.option(
    "--compact",
    is_flag=True,
    help="Only compact the repository's packs (deltas, zlib), keeping all history; safe while others run",
)
@pass_ctx
@handled
def gc_command(c: Context, before: str | None, prune_archives: bool, compact: bool) -> None:
    """Squash main's history up to BEFORE into a new root commit and repack; the old history is archived
    under refs/archive/main/ until pruned. Event tokens of rewritten commits resume from their rewrites;
    tokens from before the squash point report lost events. Peers resync with `toolstack pull --resync`.
    With --compact instead, rewrite nothing: roll every pack up into one, compressed, versions of a
    directory stored as deltas of one another (the store does so as packs accumulate; this compacts a
    repository written before it did)."""
    import datetime

    if compact == (before is not None) or (compact and prune_archives):
        raise click.UsageError("give --before DATE|COMMIT [--prune-archives], or --compact")
    if compact:
        store = c.toolstack().store
        done = store.compact()
        emit({"compacted": done}, c.json, "compacted the packs" if done else "nothing to compact")
        return
    assert before is not None

    from store.squash import find_before, squash
    from store.squash import prune_archives as prune
    from toolstack import layout
    from toolstack.claims import Claims
    from toolstack.errors import ToolstackError

    ts = c.toolstack()
    busy = Claims(ts.store).busy()
    if busy:
        raise ToolstackError(f"{len(busy)} operation(s) in progress: run gc when no VM is busy")
    point: str | float = before
    for fmt in ("%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"):
        try:
            point = datetime.datetime.strptime(before, fmt).timestamp()
            break
        except ValueError:
            continue
    commit = find_before(ts.store, layout.MAIN, point)
    result = squash(ts.store, commit, by="toolstack gc")
    record = {
        "old_head": result.old_head,
        "new_head": result.new_head,
        "archive": result.archive,
        "rewritten": result.rewritten,
        "pruned": [],
    }
    if prune_archives:
        record["pruned"] = prune(ts.store)
    emit(
        record,
        c.json,
        f"squashed history up to {commit[:12]}: main {result.old_head[:12]} -> "
        f"{result.new_head[:12]} ({result.rewritten} commits kept), old history at {result.archive}"
        + (f"; pruned {len(record['pruned'])} archive(s)" if prune_archives else ""),
    )


@click.command("agent")
@click.option("--host", "host_name", help="This host's name in the pool [config file, hostname]")
@click.option("--remote", "url", help="URL of the shared state repository [agent.remote]")
@click.option("--interval", type=click.FloatRange(0.01), help="Seconds between rounds [agent.interval, 1]")
@click.option("--once", is_flag=True, help="One round, then exit")
@click.option(
    "--max-removal-share",
    type=click.FloatRange(0.0, 1.0),
    help="Refuse a round that would remove more than this share of the VMs placed here (and more than one) "
    "[agent.max_removal_share, 0.5]",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False),
    help="Write the agent's metrics here after every round, for serve's /metrics; '' writes none "
    "[agent.metrics_file, beside the repo: toolstack.git -> toolstack.agent.prom]",
)
@pass_ctx
@handled
def agent_command(
    c: Context,
    host_name: str | None,
    url: str | None,
    interval: float | None,
    once: bool,
    max_removal_share: float | None,
    metrics_file: str | None,
) -> None:
    """Run this host's share of the pool: pull, reconcile the VMs placed here, push observed state.

    It removes the VMs deleted or migrated away on main, but refuses a round that would remove more than
    --max-removal-share of the VMs placed here (and more than one): it records why in hosts/HOST/agent and
    applies the rest of the round."""
    import socket
    import sys

    from toolstack.agent import open_agent, run_agent
    from toolstack.cli.config import default_host, settings
    from toolstack.metrics import agent_metrics_file

    configured = settings().agent
    url = url or configured.remote
    if not url:
        raise click.UsageError(
            "no remote: give --remote URL, or set remote in the config file's [agent] table"
        )
    host_name = host_name or c.host or default_host() or socket.gethostname()
    interval = interval if interval is not None else configured.interval or 1.0
    if max_removal_share is None:
        share = configured.max_removal_share
        max_removal_share = 0.5 if share is None else share
    if metrics_file is None:
        metrics_file = configured.metrics_file or agent_metrics_file(c.repo)
    ts, joined = open_agent(c.repo, c.driver_uri, host_name, url)
    try:
        click.echo(f"agent {host_name}: {c.repo} <-> {url}, driver {c.driver_uri}", err=True)
        run_agent(
            ts,
            interval=interval,
            once=once,
            report=lambda line: (click.echo(line), sys.stdout.flush()),
            joined=joined,
            max_removal_share=max_removal_share,
            metrics_file=metrics_file or None,
        )
    except KeyboardInterrupt:
        pass
    finally:
        ts.close()
