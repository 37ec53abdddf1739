#!/bin/bash
# Runs inside dom0 (chrooted into the host's / under a tmpfs overlay: see scripts/xen-e2e-init). Starts Xen's
# own daemons by hand (xenstored, xen-init-dom0, xenconsoled), as xencommons does, then the checks.
# Results go to /run/xen-e2e (the `results` 9p share): status (PASS/FAIL/DONE lines) and checks.log.
set -uo pipefail
# shellcheck source=scripts/xen-e2e-dom0-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/xen-e2e-dom0-lib.sh"
# GT_XEN_CHECKS=ours: our xenstored as dom0's xenstored, and a guest served on its ring (issue 21 step 4).
[ "$CHECKS" = ours ] && exec /bin/bash "$PROJECT/scripts/xen-e2e-ours.sh"
# GT_XEN_CHECKS=storm: N guests created and destroyed in parallel on one xenstored (issue 21 step 5).
[ "$CHECKS" = storm ] && exec /bin/bash "$PROJECT/scripts/xen-e2e-storm.sh"

t0=$(now)
dom0_dirs
if "$XENBIN/xenstored" --pid-file /var/run/xenstored.pid; then
    status "PASS xenstored started ($(readlink -f "$XENBIN/xenstored"))"
else
    status "FAIL xenstored did not start"; status "DONE"; exit 1
fi
for _ in $(seq 50); do xenstore-read / >/dev/null 2>&1 && break; sleep 0.1; done
"$XENBIN/xen-init-dom0" || status "FAIL xen-init-dom0"
"$XENBIN/xenconsoled" --pid-file=/var/run/xenconsoled.pid --log=guest || status "FAIL xenconsoled"
if xl list >"$OUT/xl-list.txt" 2>&1; then
    status "PASS xl list works ($(awk 'NR==2 {print $1}' "$OUT/xl-list.txt"))"
else
    status "FAIL xl list: $(tail -n1 "$OUT/xl-list.txt")"
fi
xl info >"$OUT/xl-info.txt" 2>&1
# What a xenstore client call costs here with Xen's daemon (xen-e2e-ours.sh measures the same with ours).
start=$(now)
for _ in $(seq 20); do xenstore-read /local/domain/0/name >/dev/null; done
status "INFO 20 xenstore-read calls (Xen's C xenstored): $(since "$start")s"
printf 'dom0 services up in %.1fs\n' "$(since "$t0" 2>/dev/null || echo 0)"
if [ "$CHECKS" = all ]; then
    PYTHONPATH=$PROJECT "$PYTHON" "$PROJECT/scripts/xen_e2e_checks.py" --out "$OUT" --xen-dir "$XEN_DIR" 2>&1 | tee "$OUT/checks.log"
fi
status "DONE"
