"""Remotes: clone, fetch, pull and push through any git server (a path, file://, git://, http(s)://, ssh://).

The distributed engine is git itself: dulwich speaks git's own protocols to a real server, remote-tracking
refs live where git keeps them (``refs/remotes/<name>/<branch>``), and the remote is recorded in the
repository's config, so ``git fetch``/``git push`` in the same repository see it too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING

from dulwich import client as dulwich_client
from dulwich import pack as dulwich_pack
from dulwich.client import get_transport_and_path
from dulwich.config import ConfigFile
from dulwich.errors import GitProtocolError, HangupException
from dulwich.objects import ZERO_SHA
from dulwich.pack import UnpackedObject
from dulwich.repo import Repo

# RemoteError and NonFastForward live in store.errors, so that `store` exports them without importing this
# module (dulwich's client, subprocess) until a remote is used.
from store.backend import ObjectReader
from store.errors import Conflict, NonFastForward, RemoteError, StoreError, UnknownBranch

if TYPE_CHECKING:
    from store.store import Store


class _CoalescedPackChunks(dulwich_pack.PackChunkGenerator):
    """dulwich writes each pack chunk (two or three per object) to the socket with its own send; joining them
    into ~256 KiB writes makes a push of thousands of small objects several times faster. The bytes are the
    same."""

    def __iter__(self) -> Iterator[bytes]:
        buffer: list[bytes] = []
        size = 0
        for chunk in super().__iter__():
            buffer.append(chunk)
            size += len(chunk)
            if size >= 1 << 18:
                yield b"".join(buffer)
                buffer, size = [], 0
        if buffer:
            yield b"".join(buffer)


dulwich_client.PackChunkGenerator = _CoalescedPackChunks  # type: ignore[misc]

# What git's receive-pack says when the ref moved under it: retry after fetching, as for a non-fast-forward.
_RACE_MARKERS = ("failed to update ref", "failed to lock", "non-fast-forward", "fetch first", "stale info")


def _moved(branch: str, lease: str) -> str:
    return (
        f"force push of {branch} refused: the remote's {branch} moved since it was last fetched (it was "
        f"{lease[:12]}): someone pushed, and forcing would discard their commits"
    )


class Remote:
    """A named remote of a disk store.

    Args:
        store: The local store.
        name: The remote's name (e.g. "origin").
        url: Where it lives.
    """

    def __init__(self, store: Store, name: str, url: str) -> None:
        if store.gitdir is None:
            raise StoreError("remotes need a store on disk (Store.open), not an in-memory one")
        self.store = store
        self.name = name
        self.url = url

    def __repr__(self) -> str:
        return f"Remote({self.name!r}, {self.url!r})"

    def _client(self, operation: str) -> tuple[object, str]:
        # As git does: $GIT_SSH_COMMAND, then core.sshCommand in the repository's config, then plain ssh.
        gitdir = self.store.gitdir
        assert gitdir is not None
        config_path = os.path.join(gitdir, "config")
        config = ConfigFile.from_path(config_path) if os.path.exists(config_path) else None
        ssh_command = os.environ.get("GIT_SSH_COMMAND") or None
        try:
            return get_transport_and_path(
                self.url, config=config, operation=operation, ssh_command=ssh_command
            )
        except ValueError as err:
            raise RemoteError(self.name, self.url, f"unsupported URL: {err}") from err

    def tracking_ref(self, branch: str) -> str:
        return f"refs/remotes/{self.name}/{branch}"

    # -- fetch ---------------------------------------------------------------------------------------------
    def fetch(self) -> dict[str, str]:
        """Download the remote's branches and their objects; update ``refs/remotes/<name>/*``.

        Returns:
            {branch: commit id} as the remote has them.
        """
        client, path = self._client("pull")
        gitdir = self.store.gitdir
        assert gitdir is not None
        before = set(os.listdir(os.path.join(gitdir, "objects", "pack")))
        repo = Repo(gitdir)
        wants = _BranchWants(repo)
        try:
            if shutil.which("git"):
                self._fetch_with_index_pack(client, path, repo, wants)
            else:
                client.fetch(path, repo, determine_wants=wants, progress=None)  # type: ignore[attr-defined]
        except (GitProtocolError, HangupException, OSError, subprocess.CalledProcessError) as err:
            raise RemoteError(self.name, self.url, f"fetch failed: {err}") from err
        finally:
            repo.close()
        self._sync_new_packs(before)
        # The refs the pack was negotiated against, never the ones a client reads again after it: a local
        # remote's refs may move while the pack is written (dulwich's LocalGitClient re-reads them), and a
        # tracking ref must never name a commit this repository did not receive.
        branches: dict[str, str] = {}
        for ref, sha in wants.advertised.items():
            if ref.startswith(b"refs/heads/") and sha and sha != ZERO_SHA:
                branch = ref[len(b"refs/heads/") :].decode()
                branches[branch] = sha.decode("ascii")
        for branch, sha in branches.items():
            self.store.repo.set_ref(self.tracking_ref(branch), sha, attempts=5)
        return branches

    def _fetch_with_index_pack(self, client: object, path: str, repo: Repo, wants: _BranchWants) -> None:
        """Receive the pack into a spool file and index it with `git index-pack --fix-thin`: git's C indexer
        is several times faster than indexing a thin pack object by object in Python."""
        gitdir = self.store.gitdir
        assert gitdir is not None
        with tempfile.TemporaryFile(dir=os.path.join(gitdir, "objects")) as spool:
            client.fetch_pack(  # type: ignore[attr-defined]
                path, wants, repo.get_graph_walker(), spool.write
            )
            if spool.tell():
                spool.seek(0)
                subprocess.run(
                    ["git", "-C", gitdir, "index-pack", "--stdin", "--fix-thin"],
                    stdin=spool,
                    check=True,
                    capture_output=True,
                )

    def _sync_new_packs(self, before: set[str]) -> None:
        """Make the packs a fetch wrote durable before any ref points into them, and visible to readers."""
        gitdir = self.store.gitdir
        assert gitdir is not None
        pack_dir = os.path.join(gitdir, "objects", "pack")
        for name in sorted(set(os.listdir(pack_dir)) - before):
            if name.endswith((".pack", ".idx")):
                fd = os.open(os.path.join(pack_dir, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        dir_fd = os.open(pack_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self.store.objects.refresh()

    # -- pull ----------------------------------------------------------------------------------------------
    def pull(
        self,
        branch: str = "main",
        strategy: str = "merge",
        into: str | None = None,
        author: str | None = None,
        message: str | None = None,
    ) -> str | None:
        """Fetch, then bring the remote's ``branch`` into local ``into`` (default: same name).

        Args:
            strategy: "merge" (3-way merge with the store's schema when both moved) or "ff-only".

        Returns:
            The new head of the local branch.

        Raises:
            Conflict: the merge conflicts (nothing moves).
            NonFastForward: "ff-only" and the histories diverged.
        """
        if strategy not in ("merge", "ff-only"):
            raise ValueError(f"unknown pull strategy {strategy!r}; use 'merge' or 'ff-only'")
        remote_branches = self.fetch()
        if branch not in remote_branches:
            raise UnknownBranch(f"{self.name}/{branch}")
        target = into or branch
        incoming = remote_branches[branch]
        local = self.store.branch(target).head
        graph = self.store.graph
        if strategy == "ff-only" and local is not None and not graph.is_ancestor(local, incoming):
            if graph.is_ancestor(incoming, local):
                return local  # already up to date
            raise NonFastForward(self.name, self.url, target, f"{target} and {self.name}/{branch} diverged")
        return self.store.merge(
            incoming,
            into=target,
            author=author,
            message=message or f"Merge {self.name}/{branch} into {target}",
        )

    # -- push ----------------------------------------------------------------------------------------------
    def push(
        self,
        branch: str = "main",
        remote_branch: str | None = None,
        force: bool = False,
        expect: str | None = None,
    ) -> str:
        """Upload local ``branch`` to the remote's ``remote_branch`` (default: same name).

        Args:
            force: Replace the remote's branch even if that discards commits of it.
            expect: With ``force``, replace it only if it still is this commit (git's
                ``--force-with-lease``): commits pushed by others since it was last seen are never discarded.

        Raises:
            NonFastForward: the remote has commits the local branch lacks (fetch and merge, or force), or,
                with ``expect``, the remote's branch is no longer ``expect``.
            RemoteError: the server refused or could not be reached.
        """
        local = self.store.branch(branch).head
        if local is None:
            raise UnknownBranch(branch)
        ref = f"refs/heads/{remote_branch or branch}".encode()
        lease = expect if force else None
        if shutil.which("git"):
            self._push_with_git(local, ref.decode(), branch, force, lease)
        else:
            self._push_with_dulwich(local, ref, branch, force, lease)
        self.store.repo.set_ref(self.tracking_ref(remote_branch or branch), local)
        return local

    def _push_with_git(self, local: str, ref: str, branch: str, force: bool, lease: str | None) -> None:
        """`git push`: git's C pack-objects builds the pack (with deltas) several times faster than dulwich,
        and git itself refuses a non-fast-forward unless forced."""
        gitdir = self.store.gitdir
        assert gitdir is not None
        command = ["git", "-C", gitdir, "push", "--porcelain", "--quiet", self.url, f"{local}:{ref}"]
        if lease is not None:
            command.insert(5, f"--force-with-lease={ref}:{lease}")
        elif force:
            command.insert(5, "--force")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
        said = (result.stdout + result.stderr).strip()
        if lease is not None and "stale info" in said:
            raise NonFastForward(self.name, self.url, branch, _moved(branch, lease))
        if any(marker in said for marker in _RACE_MARKERS) or "[rejected]" in said:
            raise NonFastForward(
                self.name,
                self.url,
                branch,
                f"push of {branch} rejected: the remote has commits it lacks (fetch first)",
            )
        raise RemoteError(self.name, self.url, f"push failed: {said.splitlines()[-1] if said else result}")

    def _push_with_dulwich(self, local: str, ref: bytes, branch: str, force: bool, lease: str | None) -> None:
        graph = self.store.graph
        refusal: list[str] = []
        stale: list[str] = []

        def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
            old = refs.get(ref)
            if lease is not None and (old or ZERO_SHA).decode("ascii") != lease:
                stale.append(lease)
                return {}
            if old and old != ZERO_SHA and not force:
                old_id = old.decode("ascii")
                if not graph.exists(old_id) or not graph.is_ancestor(old_id, local):
                    refusal.append(old_id)
                    return {}
            return {ref: local.encode("ascii")}

        client, path = self._client("push")
        try:
            result = client.send_pack(  # type: ignore[attr-defined]
                path, update_refs, generate_pack_data=self._pack_data
            )
        except (GitProtocolError, HangupException, OSError) as err:
            raise RemoteError(self.name, self.url, f"push failed: {err}") from err
        if stale:
            raise NonFastForward(self.name, self.url, branch, _moved(branch, stale[0]))
        if refusal:
            raise NonFastForward(
                self.name,
                self.url,
                branch,
                f"push of {branch} rejected: the remote has commits it lacks (fetch first)",
            )
        errors = {k.decode(): v for k, v in (getattr(result, "ref_status", None) or {}).items() if v}
        if errors:
            reasons = "; ".join(f"{ref}: {why}" for ref, why in errors.items())
            if any(marker in why for why in errors.values() for marker in _RACE_MARKERS):
                # Another client updated the branch between the server's advertisement and our update.
                raise NonFastForward(self.name, self.url, branch, f"push of {branch} lost a race: {reasons}")
            raise RemoteError(self.name, self.url, f"the server refused: {reasons}")

    def _pack_data(
        self, have: set[bytes], want: set[bytes], **_: object
    ) -> tuple[int, Iterator[UnpackedObject]]:
        """The objects the remote lacks, found by diffing each new commit's tree against its parents' (the
        remote has everything reachable from ``have``), as whole objects."""
        graph = self.store.graph
        objects = self.store.objects
        known = {h.decode("ascii") for h in have if h != ZERO_SHA}
        commits: list[str] = []
        seen_commits: set[str] = set()
        stack = [w.decode("ascii") for w in want if w != ZERO_SHA]
        while stack:
            commit = stack.pop()
            if commit in seen_commits or commit in known:
                continue
            seen_commits.add(commit)
            commits.append(commit)
            stack.extend(graph.parents(commit))
        wanted: list[bytes] = []
        seen: set[bytes] = set()
        for commit in commits:
            wanted.append(commit.encode("ascii"))
            tree = graph.tree_of(commit)
            assert tree is not None
            bases = [graph.tree_of(p) for p in graph.parents(commit)]
            _tree_delta(objects, tree, bases, wanted, seen)

        def unpacked() -> Iterator[UnpackedObject]:
            for oid in wanted:
                type_num, raw = objects.get_raw(oid)
                yield UnpackedObject(type_num, sha=bytes.fromhex(oid.decode("ascii")), decomp_chunks=[raw])

        return len(wanted), unpacked()


def _tree_delta(
    objects: ObjectReader, oid: bytes, bases: list[bytes | None], out: list[bytes], seen: set[bytes]
) -> None:
    """Append ``oid`` and the objects under it that are not the same object at the same path in ``bases``.

    Depth first, each tree before what is under it, with an explicit stack rather than recursion (a tree is
    as deep as its writers made it). Items: (id, is_dir, the ids at the same path in ``bases``).
    """
    stack: list[tuple[bytes, bool, list[bytes | None]]] = [(oid, True, bases)]
    while stack:
        current, is_dir, current_bases = stack.pop()
        if current in seen or current in current_bases:
            continue
        seen.add(current)
        out.append(current)
        if not is_dir:
            continue
        base_entries = [objects.tree_entries(b) if b else {} for b in current_bases]
        children = []
        for name, (child_is_dir, child) in objects.tree_entries(current).items():
            child_bases = [
                entries[name][1] if name in entries and entries[name][0] == child_is_dir else None
                for entries in base_entries
            ]
            children.append((child, child_is_dir, child_bases))
        stack.extend(reversed(children))


class _BranchWants:
    """A fetch's ``determine_wants``: every remote branch whose commit we do not have. It keeps the refs the
    remote advertised, which are the ones the pack it sends covers.

    Args:
        repo: The repository that receives the pack.
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.advertised: dict[bytes, bytes] = {}

    def __call__(self, refs: dict[bytes, bytes], depth: int | None = None) -> list[bytes]:
        self.advertised = dict(refs)
        return [
            sha
            for ref, sha in refs.items()
            if ref.startswith(b"refs/heads/") and sha != ZERO_SHA and sha not in self.repo.object_store
        ]


def remember_remote(gitdir: str, name: str, url: str) -> None:
    """Record a remote in the repository's config the way `git remote add` does."""
    path = os.path.join(gitdir, "config")
    config = ConfigFile.from_path(path) if os.path.exists(path) else ConfigFile()
    section = (b"remote", name.encode())
    config.set(section, b"url", url.encode())
    config.set(section, b"fetch", f"+refs/heads/*:refs/remotes/{name}/*".encode())
    config.path = path
    config.write_to_path()


def configured_url(gitdir: str, name: str) -> str | None:
    path = os.path.join(gitdir, "config")
    if not os.path.exists(path):
        return None
    try:
        return ConfigFile.from_path(path).get((b"remote", name.encode()), b"url").decode()
    except KeyError:
        return None


__all__ = ["Conflict", "NonFastForward", "Remote", "RemoteError", "configured_url", "remember_remote"]
