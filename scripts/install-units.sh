#!/usr/bin/env bash
# Install git-toolstack's systemd units and its service account (see README, "Services").
#
#   scripts/install-units.sh [TOOLSTACK]     TOOLSTACK: the toolstack command [the one on PATH]
#
# DESTDIR (a staging root, as packagers use) installs the files only: no account, no daemon-reload.
# Idempotent: running it again rewrites the same files.
set -euo pipefail
cd "$(dirname "$0")/.."

toolstack=${1:-$(command -v toolstack || true)}
if [[ -z "$toolstack" || ! -x "$toolstack" ]]; then
    echo "install-units: no toolstack command (give its path, e.g. $PWD/.venv/bin/toolstack)" >&2
    exit 2
fi
toolstack=$(realpath "$toolstack")
destdir=${DESTDIR:-}
units=$destdir/etc/systemd/system
sysusers=$destdir/usr/lib/sysusers.d
install -d "$units" "$sysusers" "$destdir/etc/toolstack"
for unit in packaging/systemd/*.service; do
    sed "s|@TOOLSTACK@|$toolstack|g" "$unit" > "$units/$(basename "$unit")"
    chmod 0644 "$units/$(basename "$unit")"
done
install -m 0644 packaging/sysusers.d/toolstack.conf "$sysusers/toolstack.conf"
echo "install-units: $(cd packaging/systemd && echo *.service) in $units (toolstack: $toolstack)"
if [[ -z "$destdir" ]]; then
    systemd-sysusers "$sysusers/toolstack.conf"
    if [[ -d /run/systemd/system ]]; then systemctl daemon-reload; fi
    echo "install-units: enable with: systemctl enable toolstack-boot; systemctl enable --now toolstack-serve (and toolstack-agent on a pool host)"
fi
