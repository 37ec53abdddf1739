"""The pool chaos harness (issue 16): a real `git daemon` on 127.0.0.1, three agents on three simulated
hosts, two operators driving the CLI on their own clones, GitOps edits in plain git work trees, and faults.

One :func:`run_chaos` is one seed. Every thread's choices come from ``random.Random`` seeded from the seed;
the interleaving of processes is the operating system's, so a seed fixes the script, not the timings. The
chronological journal of what every actor did (``journal.jsonl`` in the run's directory) is the sequence to
read when a check fails.

Actors:

- **operators** ``op1`` and ``op2`` (threads) run `toolstack` processes on their clones: create (placed on a
  host), start, shutdown, set, migrate, delete, `pull --push`, GitOps edits (valid, broken JSON, wrong type)
  committed and pushed with plain git, and `gc --before` + `push --force`. A command that names a command to
  run (exit 6: `toolstack pull --resync`; exit 7: `toolstack rollback ... --vm ...`) is followed by that
  command, as an operator would;
- **faults** (a thread): SIGKILL of an agent (restarted after a pause), `git daemon` outages (killed, then
  restarted on the same port and base path); the operators SIGKILL some of their own commands at random
  moments;
- **the agent keeper** (a thread): an agent cannot leave the "history rewritten" state by itself (it reports
  it every round); when its log says so, the keeper does what the README tells an operator to do: stop it,
  run `toolstack pull --resync` on its repository, start it again. Each time is counted;
- **the sampler** (a thread) reads the three simulators every ~50 ms and records any VM seen active on two
  hosts at once.

The checks the test makes are computed here (:class:`Outcome`); the test asserts them.
"""

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
import uuid as uuidlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import drivers
from drivers import DomainSpec
from drivers.models import DomainState
from store import Store
from tests.store.git_servers import GitDaemon
from tests.toolstack.pool_helpers import HOSTS, cli_argv, cli_env, start_agent, stop_agents
from toolstack import layout
from toolstack.errors import InvalidInput
from toolstack.gitops import invalid_vms
from toolstack.models import MANAGED_KEY, MANAGED_VALUE, Desired, read_vm
from toolstack.ownership import POOL_KEY, VM_KEY

OPERATORS = ["op1", "op2"]
AGENT_INTERVAL = 1.0
COMMAND_TIMEOUT = 90.0  # a CLI command that takes longer is hung: recorded as a finding
KILL_PROBABILITY = 0.08  # of an operator's command being SIGKILLed at a random moment
SAMPLE_PERIOD = 0.05
CONVERGE_TIMEOUT = 45.0
GIT_IDENTITY = ["-c", "user.name=GitOps Editor", "-c", "user.email=gitops@example.org"]

# What operators do, with weights. "sync" is `pull --push`.
ACTIONS = {
    "create": 18,
    "start": 14,
    "shutdown": 5,
    "set": 8,
    "migrate": 12,
    "delete": 6,
    "sync": 10,
    "gitops-valid": 6,
    "gitops-broken-json": 3,
    "gitops-wrong-type": 3,
    "gc": 3,
}
MAX_GC_PER_RUN = 2


@dataclass
class Figures:
    """What a run did, printed at the end of each seed and written to ``figures.json``."""

    seed: int
    duration: float
    operations: int = 0
    operations_by_kind: dict[str, int] = field(default_factory=dict)
    exits: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    invalid_edits_tried: int = 0
    invalid_edits_pushed: int = 0
    valid_edits_pushed: int = 0
    gc_forced_pushes: int = 0
    operator_resyncs: int = 0
    operator_rollbacks_after_exit_7: int = 0
    agents_resynced_by_hand: int = 0
    agent_unrequested_removal_reports: int = 0
    vms_acknowledged: int = 0
    deletes_acknowledged: int = 0
    vms_lost: int = 0
    deletes_undone: int = 0
    two_host_sightings: int = 0
    hung_commands: int = 0
    seconds: float = 0.0


@dataclass
class Outcome:
    """The checks of a run: each is empty when it holds."""

    figures: Figures
    lost: list[str]  # acknowledged VMs missing from the server's main
    undeleted: list[str]  # acknowledged deletes whose VM is on the server's main
    invalid_on_main: dict[str, str]  # VMs on the server's main that do not validate
    two_hosts: list[str]  # VMs seen active on two hosts at once
    unconverged: list[str]  # how hosts differ from main after the bounded wait
    fsck: dict[str, str]  # repository: `git fsck --full` errors
    foreign_touched: list[str]  # foreign or unmanaged domains that changed
    hung: list[str]  # commands that did not finish within COMMAND_TIMEOUT
    directory: Path


class Journal:
    """The chronological record of a run (``journal.jsonl``), for reading a failure's sequence."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a")
        self._lock = threading.Lock()
        self._start = time.monotonic()

    def write(self, actor: str, what: str, **details: object) -> None:
        with self._lock:
            record = {"t": round(time.monotonic() - self._start, 3), "actor": actor, "what": what, **details}
            self._file.write(json.dumps(record, default=str) + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


@dataclass
class Result:
    """A finished CLI or git command."""

    code: int | None  # None: SIGKILLed by the harness
    out: str
    err: str

    @property
    def killed(self) -> bool:
        return self.code is None


class Counters:
    """Thread-safe counters feeding :class:`Figures`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n


# -- the world ----------------------------------------------------------------------------------------------
class Pool:
    """The processes and directories of one run."""

    def __init__(self, directory: Path, journal: Journal) -> None:
        self.dir = directory
        self.base = directory / "server"
        self.base.mkdir()
        Store.open(self.base / "pool.git").close()
        self.daemon = GitDaemon(str(self.base))
        self.daemon.start()
        self.url = f"{self.daemon.url}/pool.git"
        self.journal = journal
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.agent_locks = {host: threading.Lock() for host in HOSTS}
        self.daemon_lock = threading.Lock()
        self.hung: list[str] = []

    def run(
        self, actor: str, argv: list[str], kill_after: float | None = None, cwd: Path | None = None
    ) -> Result:
        """Run a command to its end, or SIGKILL it after ``kill_after`` seconds (a random moment)."""
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(), cwd=cwd
        )
        try:
            out, err = process.communicate(timeout=kill_after if kill_after is not None else COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            out, err = process.communicate()
            if kill_after is None:
                self.hung.append(f"{actor}: {' '.join(argv[3:])} ran over {COMMAND_TIMEOUT}s")
                self.journal.write(actor, "hung", argv=argv[3:])
                return Result(-9, out, err)
            return Result(None, out, err)
        return Result(process.returncode, out, err)

    def toolstack(self, actor: str, *args: str, kill_after: float | None = None) -> Result:
        """`toolstack` on ``actor``'s repository and simulator, journaled."""
        result = self.run(actor, cli_argv(self.dir, actor, "--host", actor, *args), kill_after)
        self.journal.write(
            actor,
            " ".join(args),
            exit="SIGKILL" if result.killed else result.code,
            err=result.err.strip()[-400:] if result.code else "",
        )
        return result

    def git(self, *args: str, cwd: Path) -> Result:
        return self.run("git", ["git", *GIT_IDENTITY, *args], cwd=cwd)

    # agents ---------------------------------------------------------------------------------------------
    def start_agent(self, host: str) -> None:
        self.agents[host] = start_agent(self.dir, self.url, host, interval=AGENT_INTERVAL)
        self.journal.write(host, "agent started", pid=self.agents[host].pid)

    def ensure_agents(self) -> None:
        """Start again any agent that is not running (after a kill whose restart was cut short)."""
        for host in HOSTS:
            with self.agent_locks[host]:
                if host not in self.agents or self.agents[host].poll() is not None:
                    self.start_agent(host)

    def ensure_daemon(self) -> None:
        with self.daemon_lock:
            if not self.daemon.running:
                self.daemon.start()
                self.journal.write("faults", "git daemon restarted")

    def close(self) -> None:
        stop_agents(self.agents)
        self.daemon.stop()

    # the server's state ---------------------------------------------------------------------------------
    def server_uuids(self) -> set[str]:
        return uuids_on_main(self.base / "pool.git")


def uuids_on_main(repo: Path) -> set[str]:
    """The VMs on ``repo``'s main, read with plain git (read-only, safe beside a running toolstack)."""
    listed = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "main", "vms/"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {path.split("/")[2] for path in listed.stdout.splitlines() if path.count("/") >= 3}


# -- foreign domains ----------------------------------------------------------------------------------------
def define_foreign_domains(directory: Path) -> dict[str, tuple[str, DomainSpec, DomainState]]:
    """On each host, one running domain tagged for another pool and one running domain the toolstack never
    defined. Returns {uuid: (host, spec, state)} as the hypervisor reports them."""
    defined = {}
    for host in HOSTS:
        with drivers.open(f"sim://{directory}/{host}.sim") as hv:
            other = str(uuidlib.uuid4())
            specs = [
                DomainSpec(
                    uuid=other,
                    name=f"other-pool-{host}",
                    memory=48,
                    metadata={MANAGED_KEY: MANAGED_VALUE, POOL_KEY: "another-pool", VM_KEY: other},
                ),
                DomainSpec(uuid=str(uuidlib.uuid4()), name=f"by-hand-{host}", memory=40),
            ]
            for spec in specs:
                hv.define(spec)
                hv.start(spec.uuid)
                defined[str(spec.uuid)] = (host, hv.get_spec(spec.uuid), hv.info(spec.uuid).state)
    return defined


def foreign_changes(directory: Path, foreign: dict[str, tuple[str, DomainSpec, DomainState]]) -> list[str]:
    """How the foreign and unmanaged domains differ from when they were defined."""
    changes = []
    for uuid, (host, spec, state) in foreign.items():
        with drivers.open(f"sim://{directory}/{host}.sim") as hv:
            try:
                now_spec, now_state = hv.get_spec(uuid), hv.info(uuid).state
            except drivers.DriverError as err:
                changes.append(f"{spec.name} ({uuid}) on {host}: {err}")
                continue
        if now_spec != spec or now_state != state:
            changes.append(
                f"{spec.name} ({uuid}) on {host}: {state} -> {now_state}, spec equal: {now_spec == spec}"
            )
    return changes


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


# -- convergence --------------------------------------------------------------------------------------------
_STATE_OF = {Desired.RUNNING: DomainState.RUNNING, Desired.PAUSED: DomainState.PAUSED}


def differences(pool: Pool, ignore: set[str]) -> list[str]:
    """How the hosts differ from the server's main: placement, run state and memory of every VM."""
    with Store.open(pool.base / "pool.git") as central:
        tree = central.branch("main").tree
        wanted = {}
        for uuid in layout.vm_uuids(tree):
            try:
                wanted[uuid] = read_vm(tree, uuid)
            except InvalidInput as err:
                return [f"{uuid} does not validate on main: {err}"]
    found = []
    for host in HOSTS:
        with drivers.open(f"sim://{pool.dir}/{host}.sim") as hv:
            domains = {str(i.uuid): i for i in hv.list() if str(i.uuid) not in ignore}
            for uuid, vm in wanted.items():
                info = domains.pop(uuid, None)
                if vm.host != host:
                    if info is not None:
                        found.append(f"{vm.name} ({uuid}) is on {host}, placed on {vm.host}")
                    continue
                if info is None:
                    found.append(f"{vm.name} ({uuid}) is placed on {host} but not defined there")
                    continue
                state = _STATE_OF.get(vm.desired, DomainState.SHUTOFF)
                if info.state != state:
                    found.append(f"{vm.name} ({uuid}) on {host} is {info.state}, desired {vm.desired}")
                memory = hv.get_spec(uuid).memory
                if memory != vm.spec.memory:
                    found.append(f"{vm.name} ({uuid}) on {host} has {memory} MiB, main says {vm.spec.memory}")
            found += [f"{info.name} ({uuid}) is on {host} but not on main" for uuid, info in domains.items()]
    return found


def fsck_all(pool: Pool) -> dict[str, str]:
    repos = [pool.base / "pool.git"]
    repos += [pool.dir / f"{name}.git" for name in (*OPERATORS, *HOSTS)]
    repos += [pool.dir / f"{op}-work" for op in OPERATORS if (pool.dir / f"{op}-work").exists()]
    errors = {}
    for repo in repos:
        fsck = subprocess.run(["git", "-C", str(repo), "fsck", "--full"], capture_output=True, text=True)
        if fsck.returncode != 0:
            errors[repo.name] = fsck.stderr.strip()[-2000:]
    return errors


# -- one seed -----------------------------------------------------------------------------------------------
def run_chaos(directory: Path, seed: int, duration: float) -> Outcome:
    """One chaos run of ``duration`` seconds of operations, then convergence and the checks."""
    began = time.monotonic()
    journal = Journal(directory / "journal.jsonl")
    journal.write("harness", "seed", seed=seed, duration=duration)
    master = random.Random(seed)
    counters = Counters()
    ledger = Ledger()
    pool = Pool(directory, journal)
    threads: list[threading.Thread] = []
    sampler = keeper = None
    try:
        for op in OPERATORS:
            setup = ("init", "--name", "chaos") if op == OPERATORS[0] else ("clone", pool.url)
            assert pool.toolstack(op, *setup).code == 0, f"{op}: {setup[0]} failed"
            if op == OPERATORS[0]:
                assert pool.toolstack(op, "push", "--url", pool.url).code == 0
        foreign = define_foreign_domains(directory)
        for host in HOSTS:
            pool.start_agent(host)
        sampler = Sampler(directory, set(foreign), journal)
        keeper = AgentKeeper(pool, counters)
        deadline = time.monotonic() + duration
        gc_budget = [MAX_GC_PER_RUN]
        operators = [
            Operator(op, pool, ledger, counters, random.Random(master.random()), deadline, gc_budget)
            for op in OPERATORS
        ]
        faults = Faults(pool, counters, random.Random(master.random()), deadline)
        threads = [sampler, keeper, faults, *operators]
        for thread in threads:
            thread.start()
        for thread in (faults, *operators):
            thread.join(duration + 4 * COMMAND_TIMEOUT)
        journal.write("harness", "faults stopped")

        # The end: the server up, every agent running, each operator's last word pushed.
        pool.ensure_daemon()
        pool.ensure_agents()
        for operator in operators:
            for _ in range(3):
                if operator.sync(killable=False):
                    break
        deadline = time.monotonic() + CONVERGE_TIMEOUT
        unconverged = differences(pool, set(foreign))
        while unconverged and time.monotonic() < deadline:
            time.sleep(1)
            unconverged = differences(pool, set(foreign))
        journal.write("harness", "converged" if not unconverged else "not converged", left=unconverged)
        errors = [t.error for t in (keeper, faults, *operators) if getattr(t, "error", None)]
        assert not errors, f"a harness thread failed: {errors!r}"
    finally:
        for watcher in (sampler, keeper):
            if watcher is not None:
                watcher.stop.set()
                if watcher.is_alive():
                    watcher.join(10)
        pool.close()

    on_server = pool.server_uuids()
    with Store.open(pool.base / "pool.git") as central:
        tree = central.branch("main").tree
        invalid = invalid_vms(tree, sorted(layout.vm_uuids(tree)))
    expected = {u: n for u, n in ledger.created.items() if u not in ledger.delete_tried}
    lost = [f"{name} ({uuid})" for uuid, name in sorted(expected.items()) if uuid not in on_server]
    undeleted = [uuid for uuid in sorted(ledger.deleted) if uuid in on_server]
    counts = counters.counts
    figures = Figures(
        seed=seed,
        duration=duration,
        operations=sum(n for key, n in counts.items() if key.startswith("op:")),
        operations_by_kind={k[3:]: n for k, n in sorted(counts.items()) if k.startswith("op:")},
        exits={k[5:]: n for k, n in sorted(counts.items()) if k.startswith("exit:")},
        faults=sum(n for key, n in counts.items() if key.startswith("fault:")) + counts["gc-forced-push"],
        faults_by_kind={
            **{k[6:]: n for k, n in sorted(counts.items()) if k.startswith("fault:")},
            "gc-forced-push": counts["gc-forced-push"],
        },
        invalid_edits_tried=counts["invalid-edit-tried"],
        invalid_edits_pushed=counts["invalid-edit-pushed"],
        valid_edits_pushed=counts["valid-edit-pushed"],
        gc_forced_pushes=counts["gc-forced-push"],
        operator_resyncs=counts["resync"],
        operator_rollbacks_after_exit_7=counts["rollback-after-7"],
        agents_resynced_by_hand=counts["agent-resynced-by-hand"],
        agent_unrequested_removal_reports=counts["agent-unrequested-removal"],
        vms_acknowledged=len(ledger.created),
        deletes_acknowledged=len(ledger.deleted),
        vms_lost=len(lost),
        deletes_undone=len(undeleted),
        two_host_sightings=len(sampler.sightings) if sampler else 0,
        hung_commands=len(pool.hung),
        seconds=round(time.monotonic() - began, 1),
    )
    (directory / "figures.json").write_text(json.dumps(asdict(figures), indent=2) + "\n")
    journal.write("harness", "figures", **asdict(figures))
    journal.close()
    return Outcome(
        figures=figures,
        lost=lost,
        undeleted=undeleted,
        invalid_on_main=invalid,
        two_hosts=sorted(sampler.sightings.values()) if sampler else [],
        unconverged=unconverged,
        fsck=fsck_all(pool),
        foreign_touched=foreign_changes(directory, foreign),
        hung=pool.hung,
        directory=directory,
    )
