#!/usr/bin/env bash
# `make xen-e2e`: boots Xen with a Debian dom0 under QEMU and runs the real-Xen checks inside dom0
# (scripts/xen-e2e-dom0.sh, then scripts/xen_e2e_checks.py). See scripts/README.md.
#
#   1. packages: qemu-system-x86, qemu-system-xen (dom0's device model), busybox-static, xen-utils-4.17 from
#                apt (host side; dom0 uses the host's);
#   2. image:    xen-hypervisor-4.17-amd64 and the current linux-image-*-amd64 fetched with apt-get download
#                and unpacked with dpkg-deb -x into $GT_XEN_DIR (default ~/.cache/git-toolstack/xen), a dom0
#                initramfs (busybox + the 9p/overlay/Xen modules + init) and a domU busybox initrd;
#   3. boot:     qemu-system-x86_64 -kernel xen (multiboot) with dom0's kernel and initramfs as modules. dom0
#                mounts the host's / read-only over virtio-9p with a tmpfs overlay, so this checkout and its
#                venv are at the same paths inside dom0, mounts $GT_XEN_DIR/run/results read-write (9p tag
#                `results`) and runs scripts/xen-e2e-dom0.sh; KVM first, TCG if KVM cannot boot Xen;
#   4. results:  results/status (PASS/FAIL lines), the checks' log, the serial log run/serial.log.
# Every step checks before it acts: a second run rebuilds nothing and goes straight to the boot.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/.." && pwd)
XEN_DIR=${GT_XEN_DIR:-$HOME/.cache/git-toolstack/xen}
ACCEL=${GT_XEN_ACCEL:-auto}           # auto | kvm | tcg
BOOT_TIMEOUT=${GT_XEN_TIMEOUT:-1200}  # seconds for one boot, checks included
UP_TIMEOUT=${GT_XEN_UP_TIMEOUT:-240}  # seconds until dom0 reports it is up (then KVM gives way to TCG)
POWEROFF_GRACE=60  # seconds dom0 gets to power off once its checks are done
QEMU_MEM=${GT_XEN_MEM:-3072}          # MiB for the whole machine (Xen + dom0 + guests)
DOM0_MEM=${GT_XEN_DOM0_MEM:-1536}     # MiB for dom0
CHECKS=${GT_XEN_CHECKS:-all}          # passed to the dom0 script: all | boot | ours | storm
STORM_DAEMON=${GT_XEN_STORM_DAEMON:-oxenstored}  # storm: oxenstored | c (Xen's C xenstored) | ours
STORM_N=${GT_XEN_STORM_N:-4}          # storm: how many guests
STORM_MEM=${GT_XEN_STORM_MEM:-96}     # storm: MiB per guest (32 is too small for Debian's kernel, see README)
PYTHON=${GT_XEN_PYTHON:-$PROJECT/.venv/bin/python}  # must live on the host's / (dom0 sees it over 9p)
APT_PACKAGES=(qemu-system-x86 qemu-system-xen busybox-static xen-utils-4.17 xenstore-utils cpio)
IMAGE_VERSION=3
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo

START=$(date +%s)
STAGE_START=$START
stage() {  # stage NAME: print the time of the stage that ends and start the next
    local now; now=$(date +%s)
    if [ -n "${STAGE_NAME:-}" ]; then
        printf 'xen-e2e: stage %-9s %4ds (total %ds)\n' "$STAGE_NAME" $((now - STAGE_START)) $((now - START))
    fi
    STAGE_NAME=$1; STAGE_START=$now
}
log() { echo "xen-e2e: $*"; }
die() { echo "xen-e2e: $*" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
. "$HERE/lib.sh"

# -- 1. packages --------------------------------------------------------------------------------------------
stage packages
ensure_packages "${APT_PACKAGES[@]}"

# -- 2. image -----------------------------------------------------------------------------------------------
stage image
mkdir -p "$XEN_DIR/debs" "$XEN_DIR/run"
kernel_pkg=$(kernel_package linux-image-amd64)
release=${kernel_pkg#linux-image-}
xen_pkg=xen-hypervisor-4.17-amd64
# The image is rebuilt when any of its inputs changes: this layout, the kernel, Xen, or dom0's init.
wanted="$IMAGE_VERSION $release $(dpkg-query -W -f='${Version}' xen-utils-4.17) $(sha1sum <"$HERE/xen-e2e-init" | cut -c1-12)"
if [ "$(cat "$XEN_DIR/image-version" 2>/dev/null)" != "$wanted" ]; then
    for pkg in "$xen_pkg" "$kernel_pkg"; do download_deb "$XEN_DIR/debs" "$pkg"; done
    rm -rf "$XEN_DIR/root" && mkdir -p "$XEN_DIR/root"
    for deb in "$XEN_DIR/debs/${xen_pkg}"_*.deb "$XEN_DIR/debs/${kernel_pkg}"_*.deb; do
        dpkg-deb -x "$deb" "$XEN_DIR/root"
    done
    zcat "$XEN_DIR"/root/boot/xen-4.17-amd64.gz >"$XEN_DIR/xen"  # QEMU's multiboot loader wants the ELF
    cp "$XEN_DIR/root/boot/vmlinuz-$release" "$XEN_DIR/vmlinuz"
    modules="$XEN_DIR/root/lib/modules/$release"

    # dom0's initramfs: mount the host's / (9p) under a tmpfs overlay, then run the dom0 script in it.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    mkdir -p "$work/dom0"/{bin,dev,proc,sys,mnt,lib/modules}
    cp /bin/busybox "$work/dom0/bin/busybox"
    copy_modules "$modules" "$work/dom0/lib/modules" virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
        virtio_pci 9pnet 9pnet_virtio netfs fscache 9p overlay loop xen-privcmd xenfs xen-evtchn xen-gntdev \
        xen-gntalloc xen-blkback xen-netback
    cp "$HERE/xen-e2e-init" "$work/dom0/init"
    chmod +x "$work/dom0/init"
    pack_initramfs "$work/dom0" "$XEN_DIR/dom0-initrd.img" 1

    # The domU's initrd, as Xen's CI builds it: busybox, a shell on hvc0; plus the block frontend, and a
    # /sbin/poweroff that Linux's orderly poweroff (xl shutdown) can run.
    mkdir -p "$work/domU"/{bin,sbin,dev,proc,sys,lib/modules}
    cp /bin/busybox "$work/domU/bin/busybox"
    copy_modules "$modules" "$work/domU/lib/modules" xen-blkfront
    cat >"$work/domU/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in /lib/modules/*.ko; do insmod "$module"; done
echo "xen-e2e domU: userspace up"
while true; do sh </dev/hvc0 >/dev/hvc0 2>&1; sleep 1; done
INIT
    printf '#!/bin/busybox sh\necho "xen-e2e domU: poweroff"\nexec /bin/busybox poweroff -f\n' \
        >"$work/domU/sbin/poweroff"
    chmod +x "$work/domU/init" "$work/domU/sbin/poweroff"
    pack_initramfs "$work/domU" "$XEN_DIR/domU-initrd.img" 1
    echo "$wanted" >"$XEN_DIR/image-version"
    log "image ready in $XEN_DIR (Xen $(dpkg-query -W -f='${Version}' xen-utils-4.17), Linux $release)"
fi

# -- 3. boot ------------------------------------------------------------------------------------------------
stage boot
results="$XEN_DIR/run/results"
serial="$XEN_DIR/run/serial.log"
rm -rf "$results" && mkdir -p "$results"
# What dom0 needs to know, read by xen-e2e-init from the results share.
cat >"$results/env" <<ENV
PROJECT=$PROJECT
XEN_DIR=$XEN_DIR
RELEASE=$release
CHECKS=$CHECKS
PYTHON=$PYTHON
STORM_DAEMON=$STORM_DAEMON
STORM_N=$STORM_N
STORM_MEM=$STORM_MEM
ENV

qemu_pid=""
cleanup() { [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null; rm -rf "${work:-}"; }
trap cleanup EXIT INT TERM

boot() {  # boot kvm|tcg: one run of the machine; 0 when dom0 reported, 1 when it never came up
    local accel=$1 cpu
    if [ "$accel" = kvm ]; then cpu=${GT_XEN_KVM_CPU:-qemu64}; else cpu=qemu64,+svm; fi
    log "booting Xen under QEMU ($accel), serial log $serial"
    : >"$serial"
    qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m "$QEMU_MEM" -smp 2 \
        -nographic -monitor none -serial "file:$serial" -no-reboot \
        -kernel "$XEN_DIR/xen" \
        -append "console=com1 com1=115200,8n1 dom0_mem=${DOM0_MEM}M,max:${DOM0_MEM}M dom0_max_vcpus=2 loglvl=all guest_loglvl=all noreboot" \
        -initrd "$XEN_DIR/vmlinuz console=hvc0 earlyprintk=xen panic=-1 rdinit=/init,$XEN_DIR/dom0-initrd.img" \
        -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
        -virtfs local,path="$results",mount_tag=results,security_model=none,multidevs=remap \
        -net none 2>"$XEN_DIR/run/qemu-$accel.log" &
    qemu_pid=$!
    local deadline=$(($(date +%s) + BOOT_TIMEOUT)) up_deadline=$(($(date +%s) + UP_TIMEOUT)) up=0 off=0
    while kill -0 "$qemu_pid" 2>/dev/null; do
        if ((!up)) && { (($(date +%s) > up_deadline)) || grep -q "KVM internal error" "$XEN_DIR/run/qemu-$accel.log"; }; then
            log "dom0 did not come up under $accel: $(grep -m1 -e 'KVM internal error' -e 'error' "$XEN_DIR/run/qemu-$accel.log" || echo "no 'xen-e2e dom0: up' within ${UP_TIMEOUT}s")"
            kill "$qemu_pid"
            break
        fi
        if ((!up)) && grep -q "xen-e2e dom0: up" "$serial"; then
            up=1; stage checks
            log "dom0 is up ($(grep -m1 -o 'Xen version [^ ]*' "$serial" || echo 'Xen'))"
        fi
        if (($(date +%s) > deadline)); then
            log "timeout after ${BOOT_TIMEOUT}s: stopping QEMU"
            kill "$qemu_pid"
            break
        fi
        # The results are complete once dom0 says it powers off. Its poweroff can hang for good (a kernel
        # thread still waiting on a xenstore reply after the checks stopped the daemon), so it gets a grace.
        if ((!off)) && grep -q "xen-e2e dom0: powering off" "$serial"; then
            off=$(date +%s)
        fi
        if ((off)) && (($(date +%s) > off + POWEROFF_GRACE)); then
            log "dom0 did not power off within ${POWEROFF_GRACE}s (serial log kept): stopping QEMU"
            kill "$qemu_pid"
            break
        fi
        sleep 2
    done
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=""
    ((up))
}

case "$ACCEL" in
    auto)
        if [ -w /dev/kvm ] && boot kvm; then used=kvm
        else
            log "KVM did not bring dom0 up (serial log kept as serial-kvm.log): falling back to TCG"
            cp "$serial" "$XEN_DIR/run/serial-kvm.log" 2>/dev/null || true
            boot tcg && used=tcg || used=none
        fi ;;
    kvm | tcg) boot "$ACCEL" && used=$ACCEL || used=none ;;
    *) die "GT_XEN_ACCEL must be auto, kvm or tcg" ;;
esac
stage done

# -- 4. results ---------------------------------------------------------------------------------------------
echo "xen-e2e: accelerator $used; serial log $serial; results in $results"
[ "$used" != none ] || { tail -n 40 "$serial"; die "dom0 never came up"; }
[ -s "$results/status" ] || { tail -n 40 "$serial"; die "dom0 came up but wrote no results/status"; }
cat "$results/status"
if grep -q '^FAIL' "$results/status" || ! grep -q '^DONE' "$results/status"; then
    die "some checks failed (see $results and $serial)"
fi
log "all checks passed in $(($(date +%s) - START))s"
