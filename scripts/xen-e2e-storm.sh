#!/bin/bash
# Runs inside dom0 when GT_XEN_CHECKS=storm (issue 21 step 5): one xenstored (STORM_DAEMON: `oxenstored` for
# Xen's OCaml xenstored, `c` for its C xenstored, `ours` for `python -m xenstored --xen`), then STORM_N small
# busybox PV guests created in parallel, booted to their shell, and destroyed in parallel. Times go to status
# as INFO lines with the number of EAGAIN replies (transactions the daemon told libxl to retry): oxenstored's
# from its access log (it logs every error reply), C xenstored's from its trace file (-T), ours from its log. One daemon per boot: dom0's kernel holds its xenstore ring, so a daemon cannot be
# swapped under it; each daemon gets a boot of its own (`GT_XEN_CHECKS=storm GT_XEN_STORM_DAEMON=...`).
set -uo pipefail
# shellcheck source=scripts/xen-e2e-dom0-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/xen-e2e-dom0-lib.sh"
N=${STORM_N:-4}
DAEMON=${STORM_DAEMON:-oxenstored}
MEM=${STORM_MEM:-96}

# The daemons' trace and log go to dom0's tmpfs, not to the 9p results share (a write there is slow under
# TCG and would slow the daemon writing it); they are copied there at the end.
LOGS=/run/storm-logs
dom0_dirs "$LOGS"
t0=$(now)
case "$DAEMON" in
oxenstored)
    # Debian's /etc/xen/oxenstored.conf, with both logs on dom0's tmpfs; the access log records every
    # error reply (`error EAGAIN`), whatever access-log-*-ops say.
    grep -v -e '^access-log' -e '^xenstored-log' /etc/xen/oxenstored.conf >/tmp/oxenstored.conf
    printf '%s\n' "access-log-file = $LOGS/oxenstored-access.log" \
        "access-log-transactions-ops = true" "xenstored-log-file = $LOGS/oxenstored.log" \
        "xenstored-log-level = info" >>/tmp/oxenstored.conf
    "$XENBIN/oxenstored" --config-file /tmp/oxenstored.conf --pid-file /var/run/xenstored.pid \
        || { status "FAIL oxenstored did not start"; finish; }
    eagain() { cat "$LOGS"/oxenstored-access.log* 2>/dev/null | grep -c "EAGAIN"; }
    ;;
c)
    "$XENBIN/xenstored" --pid-file /var/run/xenstored.pid -T "$LOGS/xenstored-trace.txt" \
        || { status "FAIL xenstored did not start"; finish; }
    eagain() { grep -c "EAGAIN" "$LOGS/xenstored-trace.txt"; }
    ;;
ours)
    PYTHONPATH=$PROJECT "$PYTHON" -m xenstored --xen --socket /var/run/xenstored/socket \
        --repo /var/lib/xenstored/state.git --domain-socket-dir /var/run/xenstored/domains \
        --pid-file /var/run/xenstored.pid --log-level INFO >"$LOGS/xenstored.log" 2>&1 &
    eagain() { grep -c "EAGAIN: " "$LOGS/xenstored.log"; }
    ;;
*) status "FAIL STORM_DAEMON must be oxenstored, c or ours, not $DAEMON"; finish ;;
esac
wait_until 900 xenstore-read / || { status "FAIL the $DAEMON xenstored never answered"; finish; }
status "INFO storm: $DAEMON xenstored answers after $(since "$t0")s"
"$XENBIN/xen-init-dom0" >"$OUT/xen-init-dom0.txt" 2>&1 || status "FAIL xen-init-dom0"
"$XENBIN/xenconsoled" --pid-file=/var/run/xenconsoled.pid --log=guest || status "FAIL xenconsoled"
before=$(eagain)
# The daemon's CPU seconds (all its threads, user and system) from /proc: what each daemon costs dom0.
daemon_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$(cat /var/run/xenstored.pid)/stat"; }
cpu_before=$(daemon_cpu)

for i in $(seq "$N"); do pv_guest_cfg "storm$i" "$MEM"; done

# Create all at once: libxl's domain creation is a handful of xenstore transactions per guest.
t=$(now)
pids=()
for i in $(seq "$N"); do xl create "/tmp/storm$i.cfg" >"$OUT/storm$i-create.txt" 2>&1 & pids+=($!); done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
created=$(since "$t")
running=$(($(xl list | wc -l) - 2))
status "INFO storm: $N parallel xl create took ${created}s ($failed failed, $running running)"
check "storm: all $N guests created" test "$failed" -eq 0 -a "$running" -eq "$N"
made=()  # the guests xl lists: a failed create is reported above, not waited for
for i in $(seq "$N"); do xl domid "storm$i" >/dev/null 2>&1 && made+=("$i"); done
booted() {
    local i
    for i in "${made[@]}"; do
        grep -q "xen-e2e domU: userspace up" "/var/log/xen/console/guest-storm$i.log" 2>/dev/null || return 1
    done
}
if [ "$running" -eq 0 ]; then
    status "FAIL storm: no guest to boot: $(grep -h -m1 'error' "$OUT"/storm*-create.txt | head -n1)"
elif wait_until 600 booted; then
    status "INFO storm: the ${#made[@]} guests created at their busybox shell $(since "$t")s after the creates began"
    status "PASS storm: every guest created booted"
else
    status "FAIL storm: not every guest created booted: $(grep -L 'userspace up' /var/log/xen/console/guest-storm*.log | tr '\n' ' ')"
    # Where each stuck guest's xenstore ring stands (ours only: the indexes show who owes whom a kick).
    [ "$DAEMON" = ours ] && xenstore-control rings >"$OUT/rings.txt" 2>&1
fi
after_create=$(eagain)
cpu_after_create=$(daemon_cpu)

t=$(now)
pids=()
for i in $(seq "$N"); do xl destroy "storm$i" >"$OUT/storm$i-destroy.txt" 2>&1 & pids+=($!); done
for pid in "${pids[@]}"; do wait "$pid"; done
status "INFO storm: $N parallel xl destroy took $(since "$t")s"
gone() { [ "$(xl list | wc -l)" -eq 2 ] && ! xenstore-list /local/domain | grep -qv '^0$'; }
check "storm: every guest and its xenstore home is gone" wait_until 120 gone
status "INFO storm: $DAEMON xenstored EAGAIN replies: $((after_create - before)) during the creates and boots, $(($(eagain) - after_create)) during the destroys"
status "INFO storm: $DAEMON xenstored CPU: $(echo "$cpu_after_create - $cpu_before" | bc) s during the creates and boots, $(echo "$(daemon_cpu) - $cpu_after_create" | bc) s during the destroys"
cp -r /var/log/xen "$OUT/var-log-xen" 2>/dev/null
cp "$LOGS"/* "$OUT/" 2>/dev/null
finish
