#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine: apt packages, then a venv with the project and its test tools.
# Fast when everything is already there: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# xen-utils-4.17: Xen's test-xenstore and the reference oxenstored (no hypervisor needed, none installed);
# chromium: the API's browser test (Playwright drives Debian's build: no browser download);
# openssh-server/-client: the ssh:// remote tests run a real sshd on 127.0.0.1;
# wrk: bench/api_bench.py's load generator (C, so that it leaves the cores to the server it measures).
# systemd: systemd-analyze and systemd-sysusers check the service units in packaging/.
APT_PACKAGES=(git pkg-config gcc libvirt-dev libvirt-clients xenstore-utils xen-utils-4.17 chromium
              openssh-server openssh-client wrk systemd)
WHEELHOUSE=${WHEELHOUSE:-$HOME/.cache/git-toolstack/wheels}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# node with npm: the store's tests under Pyodide (make test-pyodide) and the browser page's runtime (make browser,
# the Chromium test of the page). Checked by command, not package: a nodejs build that bundles npm counts.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
python_ok() { python3 -c 'import venv, ensurepip, sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; }
if ! python_ok; then missing+=(python3-dev python3-venv); fi
if ((${#missing[@]})); then
    echo "bootstrap: installing apt packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# This machine's pip configuration names local mirrors that may be absent: keep their warnings out of the log.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }

stamp="$VENV/.bootstrap-stamp"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/bootstrap.sh ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
# libvirt-python is source-only on PyPI and takes ~10 s to build: keep the wheel outside the repository.
mkdir -p "$WHEELHOUSE"
if ! ls "$WHEELHOUSE"/libvirt_python-*.whl >/dev/null 2>&1; then
    quiet_pip wheel -q --no-deps -w "$WHEELHOUSE" libvirt-python
fi
# compat mode: a .pth entry for the checkout, so packages added later import without reinstalling.
quiet_pip install -q --find-links "$WHEELHOUSE" --config-settings editable_mode=compat -e '.[libvirt,dev,bench]'
touch "$stamp"
echo "bootstrap: environment ready in $VENV"
