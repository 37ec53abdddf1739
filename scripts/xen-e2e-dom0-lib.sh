# Sourced by the scripts that run inside dom0 (xen-e2e-dom0.sh, xen-e2e-ours.sh, xen-e2e-storm.sh): where
# the results go, the environment xen-e2e.sh wrote for them, and the steps they share.
# shellcheck shell=bash
OUT=/run/xen-e2e
# shellcheck source=/dev/null
. "$OUT/env"  # PROJECT, XEN_DIR, RELEASE, CHECKS, PYTHON, and the storm's STORM_* (written by xen-e2e.sh)
XENBIN=/usr/lib/xen-4.17/bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root

status() { echo "$*" | tee -a "$OUT/status"; }
check() {  # check NAME COMMAND...: PASS if the command succeeds
    local name=$1; shift
    if "$@"; then status "PASS $name"; else status "FAIL $name"; fi
}
wait_until() {  # wait_until SECONDS COMMAND...: poll the command every second
    local deadline=$(($(date +%s) + $1)); shift
    until "$@" >/dev/null 2>&1; do (($(date +%s) < deadline)) || return 1; sleep 1; done
}
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }  # since START: seconds from START (a `now`) to now
xs_is() { [ "$(xenstore-read "$1" 2>/dev/null)" = "$2" ]; }
finish() {  # the last line of the status, after copying the daemons' logs (LOGS, if set) to the results
    [ -n "${LOGS:-}" ] && cp "$LOGS"/* "$OUT/" 2>/dev/null
    status "DONE"; exit 0
}
dom0_dirs() {  # dom0_dirs [MORE...]: what Xen's daemons and xl expect to find
    # /run is a fresh tmpfs here: /run/lock (Debian's /var/lock) is where xenconsole (xl console) takes its
    # lock.
    mkdir -p /run/lock /var/run/xenstored /var/lib/xenstored /var/run/xen /var/log/xen/console /var/lib/xen "$@"
}
pv_guest_cfg() {  # pv_guest_cfg NAME MIB [LINE...]: /tmp/NAME.cfg, a busybox PV guest with the extra xl.cfg lines
    local name=$1 memory=$2; shift 2
    printf '%s\n' "name = \"$name\"" 'type = "pv"' "kernel = \"$XEN_DIR/vmlinuz\"" \
        "ramdisk = \"$XEN_DIR/domU-initrd.img\"" 'extra = "console=hvc0"' "memory = $memory" 'vcpus = 1' \
        "$@" 'on_poweroff = "destroy"' >"/tmp/$name.cfg"
}
