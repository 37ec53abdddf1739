"""``/metrics`` of ``toolstack serve`` with the other long-running processes' textfiles appended: a real
xenstored's requests and a real agent's rounds, reconcile durations and drift found. A textfile that is
missing, malformed or that would redeclare a metric is left out and said so, never a failed scrape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import drivers
from tests.toolstack.api.conftest import ROOT, start_server
from tests.toolstack.api.test_observability import samples
from tests.toolstack.pool_helpers import running_on, wait_until
from tests.xenstored.conftest import finish, start_daemon
from tests.xenstored.test_metrics import read_when, requests, serve_some_requests
from toolstack.ops import Toolstack

OK = ("toolstack_agent_rounds_total", (("outcome", "ok"),))


def up(found: dict, path: Path) -> float:
    return found[("toolstack_textfile_up", (("file", str(path)),))]


def test_serve_appends_xenstoreds_textfile_and_reports_the_files_it_leaves_out(tmp_path):
    textfile = tmp_path / "xenstore.prom"
    daemon = start_daemon(str(tmp_path / "xs"), "--metrics-file", str(textfile), "--metrics-interval", "0.1")
    try:
        serve_some_requests(daemon)
        read_when(textfile, lambda found: requests(found, "TRANSACTION_END", "EAGAIN") == 1)
    finally:
        finish(daemon)
    missing = tmp_path / "nobody-writes-this.prom"
    garbage = tmp_path / "garbage.prom"
    garbage.write_text("this is not { a metric\n")
    clash = tmp_path / "clash.prom"  # would make a second toolstack_operations family: Prometheus refuses it
    clash.write_text("# TYPE toolstack_operations counter\ntoolstack_operations_total 5\n")
    files = [textfile, missing, garbage, clash]
    server = start_server(tmp_path, *(arg for path in files for arg in ("--metrics-textfile", str(path))))
    try:
        with server.client() as client:
            scraped = client.get("/metrics")
    finally:
        server.stop()
    assert scraped.status_code == 200, scraped.text
    found = samples(scraped.text)
    assert requests(found, "TRANSACTION_END", "EAGAIN") == 1
    assert requests(found, "READ", "ENOENT") == 1
    assert requests(found, "WRITE", "ok") == 4
    assert found[("xenstored_watch_events_total", ())] == 2
    assert [up(found, path) for path in files] == [1, 0, 0, 0]
    assert found[("toolstack_textfile_mtime_seconds", (("file", str(textfile)),))] > 0
    assert ("toolstack_operations_total", ()) not in found  # the clash's sample
    assert f"# textfile {missing} left out: No such file or directory" in scraped.text
    assert (
        f"# textfile {clash} left out: line 1: metric toolstack_operations is exposed already" in scraped.text
    )


def agent(tmp_path: Path, url: str, metrics_file: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "toolstack.cli", "--repo", str(tmp_path / "h1.git")]
    command += ["--driver", f"sim://{tmp_path}/h1.sim", "agent", "--host", "h1", "--remote", url]
    command += ["--interval", "0.2", "--metrics-file", str(metrics_file)]
    with open(tmp_path / "h1.log", "ab") as log:
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def test_serve_shows_the_agents_rounds_reconcile_durations_and_drift_from_its_default_textfile(tmp_path):
    pool = tmp_path / "pool.git"
    operator = Toolstack.init(str(pool), f"sim://{tmp_path}/operator.sim", host="operator", author="operator")
    uuid = operator.create("web", memory="32M", host="h1").uuid  # wanted stopped, on h1
    operator.close()
    # Where serve looks when given no textfile: beside its repository (start_server's served.git).
    textfile = tmp_path / "served.agent.prom"
    process = agent(tmp_path, str(pool), textfile)
    try:
        assert wait_until(lambda: uuid in running_on(tmp_path, "h1"), 60, 0.1), (
            tmp_path / "h1.log"
        ).read_text()
        rounds = read_when(textfile, lambda f: f.get(OK, 0) >= 2)
        assert rounds[("toolstack_agent_drift_found_total", ())] == 0
        with drivers.open(f"sim://{tmp_path}/h1.sim") as hypervisor:  # started outside the toolstack
            hypervisor.start(uuid)
        read_when(textfile, lambda found: found[("toolstack_agent_drift_found_total", ())] == 1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    server = start_server(tmp_path)
    try:
        with server.client() as client:
            scraped = client.get("/metrics")
    finally:
        server.stop()
    found = samples(scraped.text)
    ok = found[OK]
    assert ok >= 3
    assert found[("toolstack_agent_drift_found_total", ())] == 1
    assert found[("toolstack_agent_reconcile_duration_seconds_count", ())] == ok
    assert found[("toolstack_agent_round_duration_seconds_count", ())] == ok
    assert up(found, textfile) == 1
    assert ("toolstack_textfile_up", (("file", str(tmp_path / "xenstore.prom")),)) not in found  # not there
