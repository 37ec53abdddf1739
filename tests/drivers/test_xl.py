"""The xl driver, fed recorded Xen 4.17 ``xl`` output (fixtures/xl/) through an injected command runner."""

from __future__ import annotations

import re
import shutil
import uuid as uuidlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import (
    Boot,
    DeviceNotFound,
    Disk,
    DomainExists,
    DomainNotFound,
    DomainSpec,
    DomainState,
    EventKind,
    HypervisorUnavailable,
    InvalidArgument,
    InvalidState,
    Nic,
    Scope,
    Unsupported,
)
from drivers.xen import CompletedCommand, SubprocessRunner, XlDriver
from drivers.xen import config as xlcfg
from drivers.xen.listing import parse_list_long, parse_list_table, state_from_flags
from tests.drivers.strategies import domain_specs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "xl"
WEB01 = uuidlib.UUID("5d2e8f5a-3c4b-4e8e-9a51-6b2f1c0d7e11")
DB01 = uuidlib.UUID("9b7c1d2e-0f3a-4c5b-8d6e-7f8091a2b3c4")


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


class RecordedXl:
    """A command runner replaying recorded outputs; any unexpected command fails the test loudly."""

    def __init__(self) -> None:
        self.responses: dict[tuple[str, ...], list[CompletedCommand]] = {}
        self.calls: list[tuple[str, ...]] = []

    def reply(self, argv: Sequence[str], stdout: str = "", stderr: str = "", returncode: int = 0) -> None:
        """Answer ``argv`` with this output from now on, replacing earlier answers."""
        self.responses[tuple(argv)] = [CompletedCommand(tuple(argv), returncode, stdout, stderr)]

    def then(self, argv: Sequence[str], stdout: str = "", stderr: str = "", returncode: int = 0) -> None:
        """Queue a later answer: the previous one is used once, then this one."""
        self.responses.setdefault(tuple(argv), []).append(
            CompletedCommand(tuple(argv), returncode, stdout, stderr)
        )

    def host(self, listing: str, table: str) -> None:
        self.reply(["xl", "list", "-l"], fixture(listing))
        self.reply(["xl", "list"], fixture(table))

    def __call__(self, argv: Sequence[str], input: bytes | None = None) -> CompletedCommand:
        key = tuple(argv)
        self.calls.append(key)
        queue = self.responses.get(key)
        if not queue:
            raise AssertionError(f"unexpected xl command: {key}")
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def ran(self, *argv: str) -> bool:
        return tuple(argv) in self.calls


@pytest.fixture
def xl() -> RecordedXl:
    runner = RecordedXl()
    runner.host("list-l.json", "list.txt")
    return runner


@pytest.fixture
def driver(xl: RecordedXl, tmp_path: Path) -> XlDriver:
    return XlDriver(config_dir=tmp_path / "xen", runner=xl, poll_interval=0.01)


def web01_spec() -> DomainSpec:
    """Our spec for the web01 domain running in list-l.json."""
    return DomainSpec(
        uuid=WEB01,
        name="web01",
        memory="1G",
        max_memory="2G",
        vcpus=2,
        max_vcpus=4,
        boot=Boot(
            kernel="/var/lib/xen/boot/vmlinuz-6.1.0-28-cloud-amd64",
            initrd="/var/lib/xen/boot/initrd.img-6.1.0-28-cloud-amd64",
            cmdline="console=hvc0 root=/dev/xvda1 ro",
        ),
        disks=[
            Disk(id="root", source="/var/lib/xen/images/web01-root.img", target="xvda", bus="xen"),
            Disk(
                id="data",
                source="/var/lib/xen/images/web01-data.qcow2",
                format="qcow2",
                target="xvdb",
                bus="xen",
                readonly=True,
            ),
        ],
        nics=[Nic(id="eth0", mac="00:16:3e:5a:10:01", bridge="xenbr0", model="netfront")],
        on_crash="restart",
        metadata={"role": "web"},
    )


# -- parsing recorded output ------------------------------------------------------------------------------


def test_list_reports_running_guests_with_state_from_the_table_and_hides_domain_0(driver: XlDriver):
    infos = {info.uuid: info for info in driver.list()}
    assert set(infos) == {WEB01, DB01}
    web, db = infos[WEB01], infos[DB01]
    assert (web.name, web.state, web.domid, web.memory, web.vcpus) == (
        "web01",
        DomainState.RUNNING,
        7,
        1024,
        2,
    )
    assert (db.state, db.domid, db.memory) == (DomainState.PAUSED, 9, 4096)
    assert not web.persistent  # no xl.cfg of ours yet: an unknown domain to adopt


def test_state_flags_follow_xl_list_columns():
    assert state_from_flags("r-----") == DomainState.RUNNING
    assert state_from_flags("-b----") == DomainState.RUNNING
    assert state_from_flags("--p---") == DomainState.PAUSED
    assert state_from_flags("---s--") == DomainState.SHUTDOWN
    assert state_from_flags("---sc-") == DomainState.CRASHED
    assert state_from_flags("-----d") == DomainState.SHUTDOWN
    assert parse_list_table(fixture("list.txt")) == {
        0: DomainState.RUNNING,
        7: DomainState.RUNNING,
        9: DomainState.PAUSED,
    }


def test_unparsable_list_output_is_a_driver_error_not_a_crash():
    with pytest.raises(Exception, match="cannot parse `xl list -l` output"):
        parse_list_long("Name ID Mem\n")


def test_live_spec_is_rebuilt_from_list_l_with_ids_and_metadata_from_our_config(driver: XlDriver):
    spec = web01_spec()
    driver.define(spec)
    assert driver.get_spec(WEB01, live=True) == spec


def test_live_spec_keeps_our_configs_xl_settings_which_libxl_does_not_list(driver: XlDriver):
    spec = web01_spec().evolve(extra={"xl": ("localtime = 1",)})
    driver.define(spec)
    assert driver.get_spec(WEB01, live=True) == spec  # so the running domain has no extra pending a reboot


def test_live_spec_of_a_foreign_domain_gets_derived_device_ids(driver: XlDriver):
    live = driver.get_spec(DB01, live=True)  # running, but no xl.cfg of ours
    assert [disk.id for disk in live.disks] == ["hda"]
    assert live.nics[0].id == "vif0" and live.nics[0].model == "e1000"
    assert live.boot == Boot(device="hd")


# -- configuration files ----------------------------------------------------------------------------------


def test_define_writes_the_golden_xl_cfg_and_reads_the_spec_back(driver: XlDriver, tmp_path: Path):
    spec = web01_spec()
    driver.define(spec)
    written = (tmp_path / "xen" / "web01.cfg").read_text()
    assert written == fixture("web01.cfg")
    assert driver.get_spec(WEB01) == spec


def test_define_refuses_a_name_used_by_another_uuid_and_renames(driver: XlDriver):
    spec = web01_spec()
    driver.define(spec)
    with pytest.raises(DomainExists):
        driver.define(spec.evolve(uuid=uuidlib.uuid4()))
    with pytest.raises(DomainExists):
        driver.define(spec.evolve(name="web01-renamed"))
    with pytest.raises(DomainExists):  # db01 runs under that name, unknown to our configs
        driver.define(spec.evolve(uuid=uuidlib.uuid4(), name="db01"))


def test_xl_cannot_express_virtio_disks_or_libvirt_networks(driver: XlDriver):
    base = web01_spec()
    with pytest.raises(Unsupported, match="disk 'v'"):
        driver.define(base.evolve(disks=[Disk(id="v", source="/i.img", target="vda")]))
    with pytest.raises(Unsupported, match="nic 'n'"):
        driver.define(base.evolve(nics=[Nic(id="n", mac="00:16:3e:00:00:01", network="default")]))


def xen_compatible(spec: DomainSpec) -> DomainSpec:
    disks = tuple(
        disk.model_copy(update={"target": "xvd" + disk.target[2:], "bus": "xen"}) for disk in spec.disks
    )
    nics = tuple(
        nic.model_copy(update={"network": None, "bridge": nic.bridge or "xenbr0"}) for nic in spec.nics
    )
    return spec.evolve(disks=disks, nics=nics)


_XL_CFG_LINE = re.compile(r'^[a-z_]+ = ("[^"\n]*"|\d+|\[( \'[^\'\n]*\'(, \'[^\'\n]*\')* )?\])$')


@settings(max_examples=60, deadline=None)
@given(domain_specs())
def test_every_spec_renders_to_xl_cfg_syntax_and_reads_back_equal(tmp_path_factory, spec: DomainSpec):
    spec = xen_compatible(spec)
    text = xlcfg.render(spec)
    for line in text.splitlines():
        assert line.startswith("#") or _XL_CFG_LINE.match(line), line
    path = tmp_path_factory.mktemp("cfg") / "x.cfg"
    path.write_text(text)
    assert xlcfg.read_spec(path) == spec


# -- lifecycle commands -----------------------------------------------------------------------------------


def test_start_creates_from_the_config_file_and_reports_started(xl: RecordedXl, driver: XlDriver, tmp_path):
    xl.host("list-l-dom0-only.json", "list-dom0-only.txt")
    spec = web01_spec()
    driver.define(spec)
    events = []
    driver.events(events.append)
    cfg = str(tmp_path / "xen" / "web01.cfg")
    xl.reply(["xl", "create", cfg], stderr=fixture("create-ok.stderr"))
    driver.start(WEB01)
    assert xl.ran("xl", "create", cfg)
    assert [event.kind for event in events] == [EventKind.STARTED]


def test_start_of_a_running_domain_is_invalid_state_without_calling_create(xl: RecordedXl, driver: XlDriver):
    driver.define(web01_spec())
    with pytest.raises(InvalidState):
        driver.start(WEB01)
    assert not any(call[1] == "create" for call in xl.calls)


def test_start_failing_because_the_name_is_taken_is_domain_exists(xl: RecordedXl, driver: XlDriver, tmp_path):
    xl.host("list-l-dom0-only.json", "list-dom0-only.txt")
    driver.define(web01_spec())
    cfg = str(tmp_path / "xen" / "web01.cfg")
    xl.reply(["xl", "create", cfg], stderr=fixture("create-name-exists.stderr"), returncode=1)
    with pytest.raises(DomainExists) as caught:
        driver.start(WEB01)
    assert caught.value.operation == "start" and "already exists" in caught.value.detail


def test_destroy_of_absent_or_stopped_domains_runs_nothing_and_succeeds(xl: RecordedXl, driver: XlDriver):
    xl.host("real-list-l-pv.json", "real-list-pv.txt")  # what real Xen lists: dom0 and one PV guest
    driver.destroy(uuidlib.uuid4())
    assert not any(call[1] == "destroy" for call in xl.calls)


def test_destroy_racing_with_the_domain_going_away_still_succeeds(xl: RecordedXl, driver: XlDriver):
    xl.reply(
        ["xl", "destroy", "web01"],
        stderr=fixture("invalid-domain.stderr").replace("web02", "web01"),
        returncode=1,
    )
    driver.destroy(WEB01)
    assert xl.ran("xl", "destroy", "web01")


def test_shutdown_waits_until_xl_no_longer_lists_the_domain(xl: RecordedXl, driver: XlDriver):
    xl.reply(["xl", "shutdown", "web01"])
    xl.then(["xl", "list", "-l"], fixture("list-l.json"))  # still there at the first poll
    xl.then(["xl", "list", "-l"], fixture("list-l-dom0-only.json"))
    assert driver.shutdown(WEB01, timeout=5) is True


def test_shutdown_returns_false_when_the_guest_ignores_it(xl: RecordedXl, driver: XlDriver):
    xl.reply(["xl", "shutdown", "web01"])
    assert driver.shutdown(WEB01, timeout=0.05) is False


def test_pause_and_resume_use_pause_and_unpause_idempotently(xl: RecordedXl, driver: XlDriver):
    xl.reply(["xl", "pause", "web01"])
    xl.reply(["xl", "unpause", "db01"])
    driver.pause(WEB01)
    driver.pause(DB01)  # already paused: nothing to run
    driver.resume(DB01)
    assert xl.ran("xl", "pause", "web01") and xl.ran("xl", "unpause", "db01")
    assert not xl.ran("xl", "pause", "db01")


# -- devices and resources --------------------------------------------------------------------------------


def test_live_attach_runs_block_attach_and_network_attach_with_xl_syntax(xl: RecordedXl, driver: XlDriver):
    driver.define(web01_spec())
    disk = Disk(id="logs", source="/var/lib/xen/images/logs.img", target="xvdc", bus="xen")
    nic = Nic(id="eth1", mac="00:16:3e:5a:10:02", bridge="xenbr1", model="netfront")
    xl.reply(
        [
            "xl",
            "block-attach",
            "web01",
            "format=raw, vdev=xvdc, access=rw, target=/var/lib/xen/images/logs.img",
        ]
    )
    xl.reply(["xl", "network-attach", "web01", "mac=00:16:3e:5a:10:02", "bridge=xenbr1"])
    driver.attach_device(WEB01, disk)
    driver.attach_device(WEB01, nic)
    assert driver.get_spec(WEB01).device("logs") == disk
    assert driver.get_spec(WEB01).device("eth1") == nic


def test_live_detach_names_the_vdev_or_mac(xl: RecordedXl, driver: XlDriver):
    driver.define(web01_spec())
    xl.reply(["xl", "block-detach", "web01", "xvdb"])
    xl.reply(["xl", "network-detach", "web01", "00:16:3e:5a:10:01"])
    driver.detach_device(WEB01, "data")
    driver.detach_device(WEB01, "eth0", Scope.LIVE)
    assert driver.get_spec(WEB01).device("data") is None
    assert driver.get_spec(WEB01).device("eth0") is not None  # live only


def test_xl_device_errors_map_to_device_not_found(xl: RecordedXl, driver: XlDriver):
    xl.reply(
        ["xl", "block-detach", "web01", "xvdb"],
        stderr=fixture("block-detach-not-connected.stderr"),
        returncode=1,
    )
    with pytest.raises(DeviceNotFound):
        driver.detach_device(WEB01, "xvdb", Scope.LIVE)


def test_memory_and_vcpus_use_mem_set_and_vcpu_set_within_the_maximum(xl: RecordedXl, driver: XlDriver):
    driver.define(web01_spec())
    xl.reply(["xl", "mem-set", "web01", "1536m"])
    xl.reply(["xl", "vcpu-set", "web01", "3"])
    driver.set_memory(WEB01, 1536, Scope.LIVE)
    driver.set_vcpus(WEB01, 3)
    assert driver.get_spec(WEB01).vcpus == 3
    calls_before = len(xl.calls)
    with pytest.raises(InvalidArgument, match="memory must be between 1 and the maximum 2048, got 4096"):
        driver.set_memory(WEB01, 4096)
    with pytest.raises(InvalidArgument, match=r"vcpus must be between 1 and the maximum 4, got 2\.5"):
        driver.set_vcpus(WEB01, 2.5)  # type: ignore[arg-type]
    assert not any(call[1] == "mem-set" for call in xl.calls[calls_before:])


# -- failures of xl itself --------------------------------------------------------------------------------


def test_no_hypervisor_is_hypervisor_unavailable(xl: RecordedXl, driver: XlDriver):
    xl.reply(["xl", "list", "-l"], stderr=fixture("no-hypervisor.stderr"), returncode=1)
    with pytest.raises(HypervisorUnavailable) as caught:
        driver.list()
    assert "cannot init xl context" in caught.value.detail


def test_unknown_domain_text_is_domain_not_found(xl: RecordedXl, driver: XlDriver):
    driver.define(web01_spec())
    xl.reply(["xl", "reboot", "web01"], stderr=fixture("invalid-domain.stderr"), returncode=1)
    with pytest.raises(DomainNotFound):
        driver.reboot(WEB01)


def test_operations_on_a_domain_xl_and_our_configs_do_not_know_are_domain_not_found(
    xl: RecordedXl, driver: XlDriver
):
    xl.host("real-list-l-pv.json", "real-list-pv.txt")  # what real Xen lists: dom0 and one PV guest
    ghost = uuidlib.uuid4()
    for call in (driver.start, driver.pause, driver.info, driver.get_spec, lambda u: driver.shutdown(u, 0)):
        with pytest.raises(DomainNotFound):
            call(ghost)


def test_the_subprocess_runner_reports_a_missing_xl_as_hypervisor_unavailable(tmp_path: Path):
    runner = SubprocessRunner(timeout=5)
    driver = XlDriver(config_dir=tmp_path, runner=runner, xl=str(tmp_path / "no-such-xl"))
    with pytest.raises(HypervisorUnavailable, match="not installed"):
        driver.list()


REAL_XL = shutil.which("xl", path="/usr/lib/xen-4.17/bin") or shutil.which("xl")


def test_the_real_xl_without_a_hypervisor_is_hypervisor_unavailable(tmp_path: Path):
    assert REAL_XL is not None, "Xen's xl is missing: scripts/bootstrap.sh installs xen-utils-4.17"
    driver = XlDriver(config_dir=tmp_path, xl=REAL_XL)
    with pytest.raises(HypervisorUnavailable):
        driver.list()


@given(st.sampled_from(["xl://", "xl:///srv/xen-configs"]))
def test_xl_uris_choose_the_config_directory(uri: str):
    driver = XlDriver.from_uri(uri)
    assert driver.config_dir == (Path("/etc/xen") if uri == "xl://" else Path("/srv/xen-configs"))
