"""The chaos harness's actors (see :mod:`tests.toolstack.chaos`): the sampler, the operators, the faults and
the agent keeper, each a thread of one run."""

from __future__ import annotations

import collections
import contextlib
import json
import random
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import drivers
from tests.toolstack.chaos_world import (
    ACTIONS,
    KILL_PROBABILITY,
    SAMPLE_PERIOD,
    Counters,
    Journal,
    Pool,
    Result,
    uuids_on_main,
)
from tests.toolstack.pool_helpers import HOSTS


# -- the sampler --------------------------------------------------------------------------------------------
class Sampler(threading.Thread):
    """Reads the three simulators in turn, over and over, and records VMs active on two hosts at once.

    Reads of different hosts are not simultaneous, so a VM stopped on h1 just after h1 was read and started
    on h2 just before h2 was read would look doubled without being so. A sighting therefore needs proof of
    overlap: the VM is active on host X with the same domid in two consecutive reads of X (so it ran there
    the whole time in between: a restart gets a new domid), and a read of another host in between finds it
    active too.
    """

    def __init__(self, directory: Path, ignore: set[str], journal: Journal) -> None:
        super().__init__(daemon=True, name="sampler")
        self.directory = directory
        self.ignore = ignore
        self.journal = journal
        self.stop = threading.Event()
        self.sightings: dict[tuple[str, frozenset[str]], str] = {}
        self.sweeps = 0

    def _read(self, hv: drivers.Driver) -> dict[str, int]:
        try:
            return {
                str(i.uuid): i.domid
                for i in hv.list()
                if i.domid is not None and str(i.uuid) not in self.ignore
            }
        except (drivers.DriverError, OSError, ValueError):
            return {}  # a domain file replaced under the read: the next sweep reads it

    def run(self) -> None:
        handles = {host: drivers.open(f"sim://{self.directory}/{host}.sim") for host in HOSTS}
        window: collections.deque[tuple[str, float, dict[str, int]]] = collections.deque(
            maxlen=2 * len(HOSTS)
        )
        try:
            while not self.stop.is_set():
                for host in HOSTS:
                    window.append((host, time.monotonic(), self._read(handles[host])))
                    self._check(window)
                self.sweeps += 1
                self.stop.wait(SAMPLE_PERIOD)
        finally:
            for hv in handles.values():
                hv.close()

    def _check(self, window: collections.deque[tuple[str, float, dict[str, int]]]) -> None:
        if len(window) < window.maxlen:  # type: ignore[operator]
            return
        reads = list(window)
        host, started, first = reads[0]
        _, ended, last = reads[len(HOSTS)]  # the next read of the same host
        for uuid, domid in first.items():
            if last.get(uuid) != domid:
                continue
            for other, at, seen in reads[1 : len(HOSTS)]:
                if uuid in seen:
                    key = (uuid, frozenset({host, other}))
                    if key not in self.sightings:
                        detail = (
                            f"{uuid} active on {host} (domid {domid}) from {started:.3f} to {ended:.3f} "
                            f"and on {other} (domid {seen[uuid]}) at {at:.3f}"
                        )
                        self.sightings[key] = detail
                        self.journal.write("sampler", "two hosts", detail=detail)


# -- operators ----------------------------------------------------------------------------------------------
class Ledger:
    """What operators were told: the acknowledged creates and deletes, shared by both operators."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: dict[str, str] = {}  # every name created (exit 0) -> uuid
        self.created: dict[str, str] = {}  # acknowledged: uuid -> name
        self.deleted: set[str] = set()  # acknowledged deletes
        self.delete_tried: set[str] = set()  # a delete ran (any outcome): the VM may be absent


class Operator(threading.Thread):
    """One operator: a `toolstack clone` of the pool, a plain git work tree for GitOps edits, and a script."""

    def __init__(
        self,
        name: str,
        pool: Pool,
        ledger: Ledger,
        counters: Counters,
        rng: random.Random,
        deadline: float,
        gc_budget: list[int],
    ) -> None:
        super().__init__(daemon=True, name=name)
        self.op = name
        self.pool = pool
        self.ledger = ledger
        self.counters = counters
        self.rng = rng
        self.deadline = deadline
        self.gc_budget = gc_budget
        self.work = pool.dir / f"{name}-work"
        self.pending_creates: dict[str, str] = {}
        self.pending_deletes: set[str] = set()
        self.serial = 0
        self.ran = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                kinds, weights = zip(*ACTIONS.items(), strict=True)
                with self.ledger.lock:
                    empty = not self.ledger.names
                # A pool with no VM yet gets one first: every other action needs one.
                kind = "create" if empty else self.rng.choices(kinds, weights)[0]
                self.ran = False
                getattr(self, "do_" + kind.replace("-", "_"))()
                if self.ran:  # an operation is a command that ran (an action may find nothing to act on)
                    self.counters.add(f"op:{kind}")
                if kind not in ("sync", "gc") and self.rng.random() < 0.4:
                    self.sync()
        except BaseException as err:  # reported by the test, never swallowed
            self.error = err

    # running commands -------------------------------------------------------------------------------------
    def cli(self, *args: str, killable: bool = True) -> Result:
        kill_after = None
        if killable and self.rng.random() < KILL_PROBABILITY:
            kill_after = self.rng.uniform(0.05, 1.5)
        result = self.pool.toolstack(self.op, *args, kill_after=kill_after)
        self.ran = True
        if result.killed:
            self.counters.add("fault:operator-sigkill")
        self.counters.add(f"exit:{'SIGKILL' if result.killed else result.code}")
        if result.code == 6:
            self.follow_resync()
        elif result.code == 7:
            self.follow_rollback(result.err)
        return result

    def follow_resync(self) -> None:
        """Exit 6 names `toolstack pull --resync`: run it."""
        self.counters.add("resync")
        self.pool.toolstack(self.op, "pull", "--resync")

    def follow_rollback(self, message: str) -> None:
        """Exit 7 names `toolstack rollback COMMIT --vm NAME` for the VMs a push would drop: run it, each."""
        commit = re.search(r"toolstack rollback (\w+) --vm", message)
        names = re.search(r"it would delete (.*?) from the pool", message)
        if not commit or not names:
            return
        for name in re.findall(r"(\S+) \([0-9a-f-]{36}\)", names.group(1)):
            self.counters.add("rollback-after-7")
            self.pool.toolstack(self.op, "rollback", commit.group(1), "--vm", name)

    def sync(self, killable: bool = True) -> bool:
        """`pull --push`; when main reached the server, what was pending is acknowledged or dropped."""
        result = self.cli("--json", "pull", "--push", killable=killable)
        pushed = result.code == 0
        if result.code == 5:  # invalid edits were reverted; main was pushed back all the same
            with contextlib.suppress(ValueError):
                pushed = bool(json.loads(result.out).get("pushed"))
        if pushed:
            self.acknowledge()
        return pushed

    def acknowledge(self) -> None:
        on_main = uuids_on_main(self.pool.dir / f"{self.op}.git")
        with self.ledger.lock:
            for uuid, name in self.pending_creates.items():
                if uuid in on_main:
                    self.ledger.created[uuid] = name
            for uuid in self.pending_deletes:
                if uuid not in on_main:
                    self.ledger.deleted.add(uuid)
        self.pending_creates.clear()
        self.pending_deletes.clear()

    def some_vm(self) -> tuple[str, str] | None:
        with self.ledger.lock:
            if not self.ledger.names:
                return None
            return self.rng.choice(sorted(self.ledger.names.items()))

    # actions ----------------------------------------------------------------------------------------------
    def do_create(self) -> None:
        self.serial += 1
        name = f"{self.op}-vm{self.serial:03d}"
        # Mostly started: a migration of a running VM is what could run it on two hosts at once.
        start = ["--start"] if self.rng.random() < 0.7 else []
        result = self.cli(
            "--json", "vm", "create", name, "--memory", "64M", "--on", self.rng.choice(HOSTS), *start
        )
        if result.code == 0:
            uuid = json.loads(result.out)["uuid"]
            self.pending_creates[uuid] = name
            with self.ledger.lock:
                self.ledger.names[name] = uuid

    def do_start(self) -> None:
        if vm := self.some_vm():
            self.cli("vm", "start", vm[0])

    def do_shutdown(self) -> None:
        if vm := self.some_vm():
            self.cli("vm", "shutdown", vm[0])

    def do_set(self) -> None:
        if vm := self.some_vm():
            self.cli("vm", "set", vm[0], "--memory", f"{self.rng.choice([32, 48, 64, 96])}M")

    def do_migrate(self) -> None:
        if vm := self.some_vm():
            self.cli("vm", "migrate", vm[0], "--to", self.rng.choice(HOSTS))

    def do_delete(self) -> None:
        if vm := self.some_vm():
            with self.ledger.lock:
                self.ledger.delete_tried.add(vm[1])
            if self.cli("vm", "delete", vm[0]).code == 0:
                self.pending_deletes.add(vm[1])

    def do_sync(self) -> None:
        self.sync()

    def do_gc(self) -> None:
        """What the README says: squash history up to a commit, then publish it with a forced push."""
        with self.ledger.lock:
            if self.gc_budget[0] <= 0:
                return
            self.gc_budget[0] -= 1
        if not self.sync(killable=False):
            return
        repo = self.pool.dir / f"{self.op}.git"
        back = self.rng.randint(1, 6)
        point = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", f"main~{back}"], capture_output=True, text=True, check=False
        )
        if point.returncode != 0:
            return
        if self.cli("gc", "--before", point.stdout.strip()).code != 0:
            return
        if self.cli("push", "--force").code == 0:
            self.counters.add("gc-forced-push")
            self.acknowledge()

    def do_gitops_valid(self) -> None:
        self.gitops("valid", lambda config: {**config, "memory": self.rng.choice([32, 48, 64, 96])})

    def do_gitops_broken_json(self) -> None:
        self.gitops("broken-json", None)

    def do_gitops_wrong_type(self) -> None:
        self.gitops("wrong-type", lambda config: {**config, "memory": "lots"})

    def gitops(self, kind: str, change: object) -> None:
        """A plain git commit on the server's main: fetch, reset to it, edit one VM's config, push."""
        git = self.pool.git
        cloned = (
            self.work.exists()
            or git("clone", "-q", self.pool.url, str(self.work), cwd=self.pool.dir).code == 0
        )
        if not cloned:
            return
        if git("fetch", "-q", "origin", cwd=self.work).code != 0:
            return
        git("reset", "-q", "--hard", "origin/main", cwd=self.work)  # also after gc rewrote main
        configs = sorted(self.work.glob("vms/*/*/config"))
        if change is not None:
            # An invalid edit pushed before, and not reverted by a pull yet, is no config to edit as JSON.
            configs = [path for path in configs if _parses(path)]
        if not configs:
            return
        path = self.rng.choice(configs)
        if change is None:
            path.write_text(path.read_text()[: len(path.read_text()) // 2])
        else:
            config = json.loads(path.read_text())
            path.write_text(json.dumps(change(config), indent=2, sort_keys=True) + "\n")  # type: ignore[operator]
        self.ran = True
        if kind != "valid":
            self.counters.add("invalid-edit-tried")
        if git(
            "commit", "-qam", f"gitops ({self.op}): {kind} edit of {path.parent.name}", cwd=self.work
        ).code:
            return
        pushed = git("push", "-q", "origin", "HEAD:main", cwd=self.work)
        self.pool.journal.write(self.op, f"git push {kind} edit of {path.parent.name}", exit=pushed.code)
        if pushed.code == 0:
            self.counters.add("valid-edit-pushed" if kind == "valid" else "invalid-edit-pushed")


def _parses(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except ValueError:
        return False
    return True


# -- faults and the agent keeper ---------------------------------------------------------------------------
class Faults(threading.Thread):
    """SIGKILLs agents and takes the git daemon down, at random moments, until the deadline."""

    def __init__(self, pool: Pool, counters: Counters, rng: random.Random, deadline: float) -> None:
        super().__init__(daemon=True, name="faults")
        self.pool, self.counters, self.rng, self.deadline = pool, counters, rng, deadline
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while time.monotonic() < self.deadline:
                time.sleep(self.rng.uniform(1.5, 4.0))
                if self.rng.random() < 0.6:
                    self.kill_agent(self.rng.choice(HOSTS))
                else:
                    self.outage()
        except BaseException as err:
            self.error = err

    def kill_agent(self, host: str) -> None:
        with self.pool.agent_locks[host]:
            process = self.pool.agents[host]
            process.send_signal(signal.SIGKILL)
            process.wait()
            self.counters.add("fault:agent-sigkill")
            self.pool.journal.write("faults", f"SIGKILL agent {host}")
            time.sleep(self.rng.uniform(0.1, 1.5))
            self.pool.start_agent(host)

    def outage(self) -> None:
        with self.pool.daemon_lock:
            self.pool.daemon.stop()
            self.counters.add("fault:daemon-outage")
            self.pool.journal.write("faults", "git daemon down")
        time.sleep(self.rng.uniform(0.3, 2.5))
        self.pool.ensure_daemon()


class AgentKeeper(threading.Thread):
    """Resyncs an agent by hand when its log says the pool's history was rewritten (the README's way)."""

    def __init__(self, pool: Pool, counters: Counters) -> None:
        super().__init__(daemon=True, name="agent-keeper")
        self.pool, self.counters = pool, counters
        self.stop = threading.Event()
        self.offsets = dict.fromkeys(HOSTS, 0)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(0.5):
                for host in HOSTS:
                    self.watch(host)
        except BaseException as err:
            self.error = err

    def watch(self, host: str) -> None:
        log = self.pool.dir / f"{host}.log"
        with log.open() as file:
            file.seek(self.offsets[host])
            text = file.read()
            self.offsets[host] = file.tell()
        self.counters.add("agent-unrequested-removal", text.count("UnrequestedRemoval"))
        if "HistoryRewritten" not in text:
            return
        with self.pool.agent_locks[host]:
            process = self.pool.agents[host]
            process.terminate()
            process.wait()
            resync = self.pool.toolstack(host, "pull", "--resync")
            self.counters.add("agent-resynced-by-hand")
            self.pool.journal.write("keeper", f"resynced agent {host}", exit=resync.code)
            self.pool.start_agent(host)
            self.offsets[host] = log.stat().st_size
