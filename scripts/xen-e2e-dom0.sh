#!/bin/bash
# Runs inside dom0 (chrooted into the host's / under a tmpfs overlay: see scripts/xen-e2e-init). Starts Xen's
# own daemons by hand (xenstored, xen-init-dom0, xenconsoled), as xencommons does, then the checks.
# Results go to /run/xen-e2e (the `results` 9p share): status (PASS/FAIL/DONE lines) and checks.log.
set -uo pipefail
OUT=/run/xen-e2e
# shellcheck source=/dev/null
. "$OUT/env"  # PROJECT, XEN_DIR, RELEASE, CHECKS, PYTHON (written by xen-e2e.sh)
XENBIN=/usr/lib/xen-4.17/bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
status() { echo "$*" | tee -a "$OUT/status"; }
# GT_XEN_CHECKS=ours: our xenstored as dom0's xenstored, and a guest served on its ring (issue 21 step 4).
[ "$CHECKS" = ours ] && exec /bin/bash "$PROJECT/scripts/xen-e2e-ours.sh"
# GT_XEN_CHECKS=storm: N guests created and destroyed in parallel on one xenstored (issue 21 step 5).
[ "$CHECKS" = storm ] && exec /bin/bash "$PROJECT/scripts/xen-e2e-storm.sh"

t0=$(date +%s.%N)
# /run is a fresh tmpfs here: /run/lock (Debian's /var/lock) is where xenconsole (xl console) takes its lock.
mkdir -p /run/lock /var/run/xenstored /var/lib/xenstored /var/run/xen /var/log/xen /var/lib/xen
if "$XENBIN/xenstored" --pid-file /var/run/xenstored.pid; then
    status "PASS xenstored started ($(readlink -f "$XENBIN/xenstored"))"
else
    status "FAIL xenstored did not start"; status "DONE"; exit 1
fi
for _ in $(seq 50); do xenstore-read / >/dev/null 2>&1 && break; sleep 0.1; done
"$XENBIN/xen-init-dom0" || status "FAIL xen-init-dom0"
mkdir -p /var/log/xen/console
"$XENBIN/xenconsoled" --pid-file=/var/run/xenconsoled.pid --log=guest || status "FAIL xenconsoled"
if xl list >"$OUT/xl-list.txt" 2>&1; then
    status "PASS xl list works ($(awk 'NR==2 {print $1}' "$OUT/xl-list.txt"))"
else
    status "FAIL xl list: $(tail -n1 "$OUT/xl-list.txt")"
fi
xl info >"$OUT/xl-info.txt" 2>&1
# What a xenstore client call costs here with Xen's daemon (xen-e2e-ours.sh measures the same with ours).
start=$(date +%s.%N)
for _ in $(seq 20); do xenstore-read /local/domain/0/name >/dev/null; done
status "INFO 20 xenstore-read calls (Xen's C xenstored): $(echo "$(date +%s.%N) - $start" | bc)s"
printf 'dom0 services up in %.1fs\n' "$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo 0)"
if [ "$CHECKS" = all ]; then
    PYTHONPATH=$PROJECT "$PYTHON" "$PROJECT/scripts/xen_e2e_checks.py" --out "$OUT" --xen-dir "$XEN_DIR" 2>&1 | tee "$OUT/checks.log"
fi
status "DONE"
