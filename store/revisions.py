"""Revisions: what :meth:`store.store.Store.resolve` accepts, as git's rev-parse does for these forms.

A full or abbreviated commit id, a branch or ref name, or HEAD, followed by any number of ``~N`` (N first
parents back) and ``^N`` (the Nth parent) steps.
"""

from __future__ import annotations

import re

from dulwich.refs import check_ref_format

from store.errors import UnknownCommit
from store.repository import Repository

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_SUFFIX = re.compile(r"^(.*?)((?:~\d*|\^\d?)*)$")


def resolve(repo: Repository, rev: str) -> str:
    """The commit id ``rev`` names.

    Raises:
        UnknownCommit: nothing matches, or an abbreviation is ambiguous.
    """
    if not isinstance(rev, str) or not rev:
        raise UnknownCommit(str(rev), "empty revision")
    match = _SUFFIX.match(rev)
    assert match is not None
    name, suffix = match.group(1), match.group(2)
    commit_id = _resolve_name(repo, name, rev)
    graph = repo.graph
    for step in re.findall(r"~\d*|\^\d?", suffix):
        count = int(step[1:] or 1)
        if step.startswith("~"):
            for _ in range(count):
                parents = graph.parents(commit_id)
                if not parents:
                    raise UnknownCommit(rev, "walks past the root commit")
                commit_id = parents[0]
        else:
            parents = graph.parents(commit_id)
            if count == 0:
                continue
            if len(parents) < count:
                raise UnknownCommit(rev, f"has no parent {count}")
            commit_id = parents[count - 1]
    return commit_id


def _resolve_name(repo: Repository, name: str, rev: str) -> str:
    if _HEX40.match(name):
        if not repo.graph.exists(name):
            raise UnknownCommit(rev)
        return name
    for candidate in (name, f"refs/heads/{name}", f"refs/tags/{name}", f"refs/{name}"):
        # Only well-formed ref names reach the file system ("../../etc/passwd" is not a revision).
        if candidate.startswith("refs/") and len(candidate) < 1024 and check_ref_format(candidate.encode()):
            value = repo.read_ref(candidate)
            if value is not None:
                return value
    if name == "HEAD":
        value = repo.read_ref(f"refs/heads/{repo.default_branch}")
        if value is not None:
            return value
    if re.fullmatch(r"[0-9a-f]{4,39}", name):
        found = {oid.decode() for oid in repo.objects.find_prefix(name)}
        commits = [oid for oid in found if repo.graph.exists(oid)]
        if len(commits) == 1:
            return commits[0]
        if len(commits) > 1:
            raise UnknownCommit(rev, f"ambiguous: {len(commits)} commits start with it")
    raise UnknownCommit(rev, "no such commit or branch")
