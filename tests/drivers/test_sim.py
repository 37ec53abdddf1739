"""The simulator beyond the shared contract: libvirt's raw rules, one host across processes, faults, drift."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import tempfile
import textwrap
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import drivers
from drivers import (
    Disk,
    DomainExists,
    DomainSpec,
    DomainState,
    EventKind,
    HypervisorUnavailable,
    InvalidArgument,
    InvalidState,
    Scope,
)
from drivers.sim import SimDriver
from drivers.sim.store import SimDomain
from tests.drivers.conftest import EventRecorder
from tests.drivers.strategies import domain_specs

REPO = Path(__file__).resolve().parents[2]


def new_spec(name: str | None = None, **overrides: object) -> DomainSpec:
    ref = uuidlib.uuid4()
    fields: dict[str, object] = {
        "uuid": ref,
        "name": name or f"s-{ref.hex[:8]}",
        "memory": 128,
        "max_memory": 512,
    }
    fields.update(overrides)
    return DomainSpec.model_validate(fields)


@pytest.fixture
def sim() -> SimDriver:
    driver = SimDriver()
    yield driver
    driver.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "host"


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a separate interpreter (another process on the same host directory)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- libvirt's raw rules, below the contract --------------------------------------------------------------


def test_the_raw_host_refuses_to_start_a_running_domain_or_destroy_an_inactive_one(sim: SimDriver):
    spec = new_spec()
    sim.define(spec)
    with pytest.raises(InvalidState, match="not running"):
        sim.host.destroy(spec.uuid)
    sim.host.create(spec.uuid)
    with pytest.raises(InvalidState, match="already running"):
        sim.host.create(spec.uuid)


def test_undefining_a_running_domain_on_the_raw_host_leaves_a_transient_domain_that_vanishes(sim: SimDriver):
    spec = new_spec()
    sim.define(spec)
    sim.start(spec.uuid)
    sim.host.undefine(spec.uuid)
    assert sim.info(spec.uuid).persistent is False
    sim.destroy(spec.uuid)
    assert spec.uuid not in {info.uuid for info in sim.list()}


def test_domids_are_assigned_fresh_at_every_start(sim: SimDriver):
    spec = new_spec()
    sim.define(spec)
    domids = []
    for _ in range(3):
        sim.start(spec.uuid)
        domids.append(sim.info(spec.uuid).domid)
        sim.destroy(spec.uuid)
    assert domids == sorted(set(domids)) and len(domids) == 3


# -- one host across processes ----------------------------------------------------------------------------


def test_a_directory_host_is_seen_by_another_process(state_dir: Path):
    spec = new_spec()
    with drivers.open(f"sim://{state_dir}") as hv:
        hv.define(spec)
        hv.start(spec.uuid)
    result = run_python(
        f"""
        import drivers, json
        with drivers.open("sim://{state_dir}") as hv:
            info = hv.info("{spec.uuid}")
            hv.destroy("{spec.uuid}")
            print(json.dumps({{"state": info.state.value, "domid": info.domid}}))
        """
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"state": "running", "domid": 1}
    with drivers.open(f"sim://{state_dir}") as hv:
        assert hv.info(spec.uuid).state == DomainState.SHUTOFF


def test_queries_answer_while_another_process_holds_the_host_for_a_change(state_dir: Path):
    spec = new_spec()
    with drivers.open(f"sim://{state_dir}") as hv:
        hv.define(spec)
        hv.start(spec.uuid)
    # Another process holds the write lock (as a slow start would) until told to let go.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, os, sys
                fd = os.open("{state_dir}/lock", os.O_RDWR)
                fcntl.flock(fd, fcntl.LOCK_EX)
                print("held", flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        def query() -> tuple[DomainState, int | None, list[uuidlib.UUID]]:
            with drivers.open(f"sim://{state_dir}") as hv:
                info = hv.info(spec.uuid)
                return info.state, info.domid, [i.uuid for i in hv.list()]

        with ThreadPoolExecutor(1) as pool:
            # Fails with TimeoutError if queries wait for the lock (the holder is released below either way).
            answer = pool.submit(query)
            try:
                assert answer.result(timeout=10) == (DomainState.RUNNING, 1, [spec.uuid])
            finally:
                assert holder.stdin is not None
                holder.stdin.write("\n")
                holder.stdin.flush()
    finally:
        holder.kill()
        holder.wait(10)


def _define_many(state_dir: str, prefix: str, count: int) -> None:
    with drivers.open(f"sim://{state_dir}") as hv:
        for index in range(count):
            spec = new_spec(f"{prefix}-{index}")
            hv.define(spec)
            hv.start(spec.uuid)


def test_concurrent_processes_never_lose_or_corrupt_domains(state_dir: Path):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_define_many, args=(str(state_dir), f"p{n}", 15)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    with drivers.open(f"sim://{state_dir}") as hv:
        infos = hv.list()
    assert len(infos) == 60
    domids = [info.domid for info in infos]
    assert len(set(domids)) == 60  # the domid counter is shared under the lock
    assert not list(state_dir.rglob("*.tmp"))  # atomic writes leave no temp files behind


def _race_for_name(state_dir: str, name: str, results: multiprocessing.Queue) -> None:
    with drivers.open(f"sim://{state_dir}") as hv:
        try:
            hv.define(new_spec(name))
            results.put("won")
        except DomainExists:
            results.put("lost")


def test_processes_racing_for_one_name_have_exactly_one_winner(state_dir: Path):
    SimDriver.from_uri(f"sim://{state_dir}").close()  # create the directory before the race
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_race_for_name, args=(str(state_dir), "contested", results)) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    outcomes = sorted(results.get(timeout=5) for _ in workers)
    assert outcomes == ["lost"] * 5 + ["won"]


def test_events_from_another_process_reach_subscribers(state_dir: Path):
    recorder = EventRecorder()
    spec = new_spec()
    with drivers.open(f"sim://{state_dir}") as hv:
        hv.events(recorder)
        result = run_python(
            f"""
            import uuid, drivers
            from drivers import DomainSpec
            spec = DomainSpec(uuid=uuid.UUID("{spec.uuid}"), name="{spec.name}", memory=128)
            with drivers.open("sim://{state_dir}") as other:
                other.define(spec)
                other.start(spec.uuid)
            """
        )
        assert result.returncode == 0, result.stderr
        recorder.wait_kinds(spec.uuid, EventKind.DEFINED, EventKind.STARTED, timeout=5)
        hv.destroy(spec.uuid)  # our own events are delivered once, not again from the shared log
        recorder.wait_kinds(spec.uuid, EventKind.STOPPED, timeout=5)
        assert [event.kind for event in recorder.of(spec.uuid)].count(EventKind.STOPPED) == 1


# -- fault injection --------------------------------------------------------------------------------------


def test_fail_nth_fails_exactly_that_call_and_changes_nothing(sim: SimDriver):
    spec = new_spec()
    sim.define(spec)
    sim.faults.fail_nth("start", 2, error=InvalidState)
    sim.start(spec.uuid)
    sim.destroy(spec.uuid)
    with pytest.raises(InvalidState, match="injected fault") as caught:
        sim.start(spec.uuid)
    assert (caught.value.uuid, caught.value.operation) == (str(spec.uuid), "start")
    assert sim.info(spec.uuid).state == DomainState.SHUTOFF
    sim.start(spec.uuid)  # the fault fired once
    assert sim.faults.calls["start"] == 3


def test_an_after_fault_applies_the_change_but_reports_failure(sim: SimDriver):
    spec = new_spec()
    sim.faults.fail_nth("define", phase="after")
    with pytest.raises(HypervisorUnavailable):
        sim.define(spec)
    assert sim.get_spec(spec.uuid) == spec  # the ambiguous failure a reconciler must survive


def test_fail_always_lasts_until_cleared(sim: SimDriver):
    sim.faults.fail_always("list")
    for _ in range(3):
        with pytest.raises(HypervisorUnavailable):
            sim.list()
    sim.faults.clear("list")
    assert sim.list() == []


def test_a_marker_file_makes_another_process_fail_while_it_exists(state_dir: Path):
    spec = new_spec()
    with drivers.open(f"sim://{state_dir}") as hv:
        hv.define(spec)
        marker = hv.faults.set_marker("start", "InvalidState: disk busy")
        code = f"""
            import drivers, sys
            with drivers.open("sim://{state_dir}") as hv:
                try:
                    hv.start("{spec.uuid}")
                except drivers.DriverError as error:
                    print(type(error).__name__, error.message)
                    sys.exit(3)
            """
        failed = run_python(code)
        assert (failed.returncode, failed.stdout.strip()) == (3, "InvalidState disk busy")
        hv.faults.clear_marker("start")
        assert not marker.exists()
        assert run_python(code).returncode == 0
        assert hv.info(spec.uuid).state == DomainState.RUNNING


def test_fault_plans_refuse_unknown_operations_and_memory_markers(sim: SimDriver):
    with pytest.raises(InvalidArgument, match="unknown operation 'launch'"):
        sim.faults.fail_nth("launch")
    with pytest.raises(InvalidArgument, match="state directory"):
        sim.faults.set_marker("start")


# -- out-of-band drift ------------------------------------------------------------------------------------


def test_oob_kill_stops_the_domain_and_emits_events(sim: SimDriver, recorder: EventRecorder):
    sim.events(recorder)
    spec = new_spec()
    sim.define(spec)
    sim.start(spec.uuid)
    sim.oob_kill(spec.uuid, crashed=True)
    assert sim.info(spec.uuid).state == DomainState.CRASHED
    recorder.wait_kinds(spec.uuid, EventKind.CRASHED, EventKind.STOPPED)
    sim.start(spec.uuid)  # a crashed domain can be started again
    assert sim.info(spec.uuid).state == DomainState.RUNNING


def test_oob_memory_and_vcpu_changes_show_up_live_only(sim: SimDriver):
    spec = new_spec()
    sim.define(spec)
    sim.start(spec.uuid)
    sim.oob_set_memory(spec.uuid, 300)
    sim.oob_set_vcpus(spec.uuid, 3)
    assert (sim.info(spec.uuid).memory, sim.info(spec.uuid).vcpus) == (300, 3)
    assert sim.get_spec(spec.uuid) == spec


def test_oob_created_domains_are_listed_for_adoption(sim: SimDriver):
    transient = new_spec()
    stopped = new_spec()
    sim.oob_create(transient, running=True, persistent=False)
    sim.oob_create(stopped, running=False)
    listed = {info.uuid: info for info in sim.list()}
    assert listed[transient.uuid].persistent is False and listed[transient.uuid].state == DomainState.RUNNING
    assert listed[stopped.uuid].state == DomainState.SHUTOFF
    with pytest.raises(InvalidState):
        sim.get_spec(transient.uuid)  # no persistent config to read
    assert sim.get_spec(transient.uuid, live=True) == transient


def test_a_guest_ignoring_shutdown_makes_shutdown_time_out(sim: SimDriver):
    spec = new_spec()
    sim.define(spec)
    sim.start(spec.uuid)
    sim.oob_ignore_shutdown(spec.uuid)
    assert sim.shutdown(spec.uuid, timeout=0.1) is False
    assert sim.info(spec.uuid).state == DomainState.RUNNING


def test_live_attach_is_supported_by_the_simulator(sim: SimDriver, recorder: EventRecorder):
    sim.events(recorder)
    spec = new_spec()
    sim.define(spec)
    sim.start(spec.uuid)
    disk = Disk(id="hot", source="/hot.img", target="vdb")
    sim.attach_device(spec.uuid, disk, Scope.LIVE)
    assert sim.get_spec(spec.uuid, live=True).device("hot") == disk
    assert sim.get_spec(spec.uuid).device("hot") is None
    recorder.wait_for(spec.uuid, lambda events: any(e.kind == EventKind.DEVICE_ADDED for e in events))


def test_sim_uris_with_a_host_part_are_refused():
    with pytest.raises(InvalidArgument, match="sim:///absolute/state/dir"):
        drivers.open("sim://relative/dir")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=domain_specs(), running=st.booleans())
def test_a_domain_read_back_from_its_file_equals_the_domain_written(
    tmp_path: Path, spec: DomainSpec, running: bool
):
    # The directory host keeps parsed domains by file content, seeded by its own writes: that is exact only
    # if parsing what it wrote gives back the very domain it wrote.
    with drivers.open(f"sim://{tempfile.mkdtemp(dir=tmp_path)}?durable=0") as hv:
        hv.define(spec)
        if running:
            hv.start(spec.uuid)
        store = hv.host.store
        written = hv.host.lookup(spec.uuid, "test")
        data = (store.path / "domains" / f"{spec.uuid}.json").read_bytes()
        assert SimDomain.model_validate_json(data) == written
        assert hv.get_spec(spec.uuid) == spec
