"""The page's Python, run by Pyodide in the browser (issue 22): the state repository in a store in memory.

It imports the store (shipped as a zip beside the page) and nothing of the toolstack, whose models need
packages a browser does not have: the few layout rules it needs are repeated here from
:mod:`toolstack.layout` (``vms/<uuid[:2]>/<uuid>/``, ``names/<sha1(name)[:2]>/<name>``). Every request goes
through ``request``, a JS function the page gives (``fetch`` underneath), so this file also runs on CPython
with any async function in its place.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from store import Store
from store.dumbhttp import fetch
from store.smarthttp import push

MAIN = "main"
# (method, url, body or None, headers) -> (status, body), as store.smarthttp.Requester
Request = Callable[[str, str, bytes | None, dict[str, str]], Awaitable[tuple[int, bytes]]]


def name_path(name: str) -> str:
    return f"names/{hashlib.sha1(name.encode('utf-8', 'surrogateescape')).hexdigest()[:2]}/{name}"


def vm_dir(uuid: str) -> str:
    return f"vms/{uuid[:2]}/{uuid}"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A config as {"boot.kernel": ..., "memory": ...}: what a field-level diff compares."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


class BrowserRepo:
    """One state repository, cloned from ``url`` (a dumb-HTTP mirror, or ``toolstack serve``'s ``/git``).

    Attributes:
        store: The store in memory.
        cloned_at: main's commit when it was cloned (what the server is known to hold).
    """

    def __init__(self, url: str, request: Request, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.request = request
        self.token = token
        self.store = Store.memory()
        self.cloned_at: str | None = None
        self.pushed: list[str] = []
        self.packs_read: set[str] = set()

    def _headers(self, token: str | None = None) -> dict[str, str]:
        token = token or self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _get(self, url: str) -> bytes | None:
        status, body = await self.request("GET", url, None, self._headers())
        if status == 404:
            return None
        if status != 200:
            raise OSError(f"GET {url}: HTTP {status}")
        return body

    async def clone(self) -> str:
        """Fetch every branch; returns main's commit."""
        for branch, commit in (await fetch(self.store, self.url, self._get, self.packs_read)).items():
            self.store.set_branch(branch, commit)
        self.cloned_at = self.store.branch(MAIN).head
        if self.cloned_at is None:
            raise OSError(f"{self.url} has no branch {MAIN}")
        return self.cloned_at

    # -- reading -----------------------------------------------------------------------------------------
    def uuid_of(self, name: str, commit: str | None = None) -> str | None:
        """The uuid ``name`` names at ``commit`` (main's head by default), else at any commit of main (a VM
        deleted since keeps its history)."""
        tree = self.store.tree_at(commit or self.store.branch(MAIN).head)
        found = tree.get(name_path(name))
        if found is None and commit is None:
            for entry in self.store.branch(MAIN).log(name_path(name)):
                found = self.store.tree_at(entry.id).get(name_path(name))
                if found:
                    break
        return found.decode().strip() if found else None

    def vms(self, commit: str) -> list[dict[str, Any]]:
        """The VMs at ``commit``: name, uuid, memory, vcpus (as their configs say)."""
        tree = self.store.tree_at(commit)
        out = []
        for shard in tree.list("names") if tree.kind("names") == "directory" else []:
            for name in tree.list(f"names/{shard}"):
                uuid = (tree.get(f"names/{shard}/{name}") or b"").decode().strip()
                config = self._config(commit, uuid) or {}
                out.append(
                    {"name": name, "uuid": uuid, "memory": config.get("memory"), "vcpus": config.get("vcpus")}
                )
        return sorted(out, key=lambda vm: vm["name"])

    def _config(self, commit: str, uuid: str) -> dict[str, Any] | None:
        raw = self.store.tree_at(commit).get(f"{vm_dir(uuid)}/config")
        return json.loads(raw) if raw is not None else None

    def vm_at(self, commit: str, name: str) -> dict[str, Any] | None:
        """``name``'s config at ``commit`` (the VM that name has on main now, or had last)."""
        uuid = self.uuid_of(name, commit) or self.uuid_of(name)
        return self._config(commit, uuid) if uuid else None

    def log(self, name: str) -> list[str]:
        """The commits of main that changed ``name``'s directory, newest first (as ``git log -- <dir>``)."""
        uuid = self.uuid_of(name)
        if uuid is None:
            return []
        return [entry.id for entry in self.store.branch(MAIN).log(vm_dir(uuid))]

    def timeline(self, name: str) -> list[dict[str, Any]]:
        """``log`` with who, when and what."""
        return [self.describe(commit) for commit in self.log(name)]

    def describe(self, commit: str) -> dict[str, Any]:
        info = self.store.graph.info(commit)
        return {
            "commit": commit,
            "author": info.author,
            "time": info.author_time,
            "subject": info.message.split("\n", 1)[0],
            "parents": list(info.parents),
        }

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        """main's history, newest first, as ``git log`` lists it."""
        return [self.describe(entry.id) for entry in self.store.branch(MAIN).log(limit=limit)]

    def diff(self, a: str, b: str) -> list[dict[str, Any]]:
        """Field-level changes of every VM config between two commits: {vm, field, old, new}."""
        names = {vm["uuid"]: vm["name"] for vm in self.vms(a) + self.vms(b)}
        changes = []
        for uuid, name in sorted(names.items(), key=lambda item: item[1]):
            old = flatten(self._config(a, uuid) or {})
            new = flatten(self._config(b, uuid) or {})
            for field in sorted(set(old) | set(new)):
                if old.get(field) != new.get(field):
                    changes.append({"vm": name, "field": field, "old": old.get(field), "new": new.get(field)})
        return changes

    # -- writing -----------------------------------------------------------------------------------------
    async def commit_and_push(self, name: str, changes: dict[str, Any], token: str, author: str) -> str:
        """Fetch main again, change fields of ``name``'s config in a transaction, push to the server; returns
        the pushed commit. The server validates the edit (a refusal raises ``PushRejected``)."""
        if hasattr(changes, "to_py"):  # a JS object, from the page
            changes = changes.to_py()
        self.token = token
        for branch, commit in (await fetch(self.store, self.url, self._get, self.packs_read)).items():
            self.store.set_branch(branch, commit)
        uuid = self.uuid_of(name, self.store.branch(MAIN).head)
        if uuid is None:
            raise KeyError(f"no VM named {name!r} on main")
        path = f"{vm_dir(uuid)}/config"
        main = self.store.branch(MAIN)
        with main.transaction(message=f"vm set {name} (in the browser)", author=author) as tx:
            config = json.loads(tx.get(path))
            config.update(changes)
            tx.set(path, json.dumps(config, indent=2, sort_keys=True).encode() + b"\n")
        known = [c for c in [self.cloned_at, *self.pushed] if c]
        pushed = await push(self.store, self.url, MAIN, self.request, self._headers(token), known=known)
        self.pushed.append(pushed)
        return pushed
