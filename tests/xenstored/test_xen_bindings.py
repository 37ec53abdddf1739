"""``--xen`` binds Debian's Xen libraries with ctypes; where there is no Xen (this machine, CI) the daemon
refuses to start, naming the call that failed, and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.xenstored.conftest import ROOT
from xenstored.xenlibs import XenError


# The one skip in these tests: it is about the absence of Xen, so a host with Xen (dom0, where xenevtchn_open
# succeeds and the daemon starts) cannot run it; scripts/xen-e2e-ours.sh checks --xen there instead.
@pytest.mark.skipif(
    os.path.exists("/dev/xen/evtchn"),
    reason="this host has Xen (/dev/xen/evtchn exists): the no-Xen refusal cannot happen here",
)
def test_without_xen_the_daemon_refuses_xen_mode_naming_the_call(tmp_path):
    socket_path = str(tmp_path / "socket")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xenstored",
            "--socket",
            socket_path,
            "--repo",
            str(tmp_path / "xs.git"),
            "--xen",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert "cannot serve under Xen: xenevtchn_open: No such file or directory" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(socket_path)


def test_a_xen_error_names_the_call_and_its_errno():
    err = XenError("xengnttab_map_grant_ref", 22)
    assert (err.call, err.errno) == ("xengnttab_map_grant_ref", 22)
    assert str(err) == "xengnttab_map_grant_ref: Invalid argument (errno 22)"
