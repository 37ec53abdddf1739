"""The chaos harness's world (see :mod:`tests.toolstack.chaos`): its settings, the pool of hosts, agents and
operators around one `git daemon`, the journal and counters every actor writes, and the foreign domains that
must never be touched."""

from __future__ import annotations

import collections
import json
import signal
import subprocess
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import drivers
from drivers import DomainSpec
from drivers.models import DomainState
from store import Store
from tests.store.git_servers import GitDaemon
from tests.toolstack.pool_helpers import HOSTS, cli_argv, cli_env, start_agent, stop_agents
from toolstack.models import MANAGED_KEY, MANAGED_VALUE
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
