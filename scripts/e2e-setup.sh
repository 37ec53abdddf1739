#!/usr/bin/env bash
# Sets up what `pytest -m e2e` needs, idempotently (run as root; `make e2e` calls it):
#   1. libvirtd + QEMU (TCG, no KVM needed) without systemd, per shared/reference/libvirt.md;
#   2. a bootable guest in $GT_E2E_DIR (default ~/.cache/git-toolstack/e2e): a Debian cloud kernel (vmlinuz)
#      and a busybox initramfs (initrd.img) whose init mounts /proc, /sys and /dev, loads the ACPI button
#      and evdev modules, powers off on the ACPI power button (so shutdown() works) and otherwise idles.
# Every step checks before it acts; a second run takes about a second.
set -euo pipefail

E2E_DIR=${GT_E2E_DIR:-$HOME/.cache/git-toolstack/e2e}
APT_PACKAGES=(libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86 qemu-utils busybox-static cpio)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
log() { echo "e2e-setup: $*"; }
die() { echo "e2e-setup: $*" >&2; exit 1; }
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

# -- 1. packages ----------------------------------------------------------------------------------------
ensure_packages "${APT_PACKAGES[@]}"

# -- 2. libvirtd without systemd ------------------------------------------------------------------------
getent passwd libvirt-qemu >/dev/null || $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin libvirt-qemu
$SUDO mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu /run/libvirt /var/lib/libvirt/images
qemu_conf=/etc/libvirt/qemu.conf
[ -f "$qemu_conf" ] || $SUDO touch "$qemu_conf"
set_conf() {  # set_conf key value: make `key = value` the only setting of key in qemu.conf
    if ! grep -qx "$1 = $2" "$qemu_conf"; then
        $SUDO sed -i "/^[# ]*$1 *=/d" "$qemu_conf"
        echo "$1 = $2" | $SUDO tee -a "$qemu_conf" >/dev/null
        restart_libvirtd=1
    fi
}
restart_libvirtd=0
set_conf user '"root"'
set_conf group '"root"'
set_conf security_driver '"none"'
if ((restart_libvirtd)) && [ -s /run/libvirtd.pid ] && kill -0 "$(cat /run/libvirtd.pid)" 2>/dev/null; then
    log "qemu.conf changed: restarting libvirtd"
    $SUDO kill "$(cat /run/libvirtd.pid)"  # the pid libvirtd -d recorded
    for _ in $(seq 50); do kill -0 "$(cat /run/libvirtd.pid 2>/dev/null)" 2>/dev/null || break; sleep 0.1; done
fi
pgrep -x virtlogd >/dev/null || { log "starting virtlogd"; $SUDO virtlogd -d; }
pgrep -x libvirtd >/dev/null || { log "starting libvirtd"; $SUDO libvirtd -d; }
for _ in $(seq 50); do [ -S /run/libvirt/libvirt-sock ] && break; sleep 0.2; done
[ -S /run/libvirt/libvirt-sock ] || { echo "e2e-setup: libvirtd did not create its socket" >&2; exit 1; }
# The first connection probes QEMU's capabilities (~8 s); do it here rather than inside a timed test.
virsh -c qemu:///system version >/dev/null

# A bridge for NIC definitions; guests in the suite define NICs on it but do not need traffic.
if ! ip link show gtbr0 >/dev/null 2>&1; then
    $SUDO ip link add gtbr0 type bridge 2>/dev/null && $SUDO ip link set gtbr0 up \
        || log "cannot create bridge gtbr0 (no CAP_NET_ADMIN?): NIC hotplug is not exercised"
fi

# -- 3. the guest ---------------------------------------------------------------------------------------
# Modules the guest loads, in dependency order (busybox insmod does not resolve dependencies): the ACPI power
# button and evdev (so shutdown() works), and virtio-pci plus the balloon (so live set_memory() works).
GUEST_MODULES=(drivers/acpi/button drivers/input/evdev drivers/virtio/virtio_ring drivers/virtio/virtio
    drivers/virtio/virtio_pci_modern_dev drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci
    drivers/virtio/virtio_balloon)
GUEST_VERSION="2 ${GUEST_MODULES[*]}"
mkdir -p "$E2E_DIR"
if [ ! -s "$E2E_DIR/vmlinuz" ] || [ ! -s "$E2E_DIR/initrd.img" ] \
    || [ "$(cat "$E2E_DIR/guest-version" 2>/dev/null)" != "$GUEST_VERSION" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    image_pkg=$(kernel_package linux-image-cloud-amd64)
    download_deb "$work" "$image_pkg"
    dpkg-deb -x "$work"/linux-image-*.deb "$work/kernel"
    release=${image_pkg#linux-image-}
    cp "$work/kernel/boot/vmlinuz-$release" "$E2E_DIR/vmlinuz"

    root="$work/initramfs"
    mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
    cp /bin/busybox "$root/bin/busybox"
    # Copied as NN-name.ko so that the init's glob loads them in order; built-in ones are simply absent.
    copy_modules "$work/kernel/lib/modules/$release" "$root/lib/modules" --optional "${GUEST_MODULES[@]}"
    cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in /lib/modules/*.ko; do [ -e "$module" ] && { insmod "$module" || echo "e2e guest: insmod $module failed"; }; done
echo "e2e guest: userspace up"
# Power off when the ACPI power button is pressed (libvirt's default shutdown method).
for event in /sys/class/input/event*; do
    if grep -q "Power Button" "$event/device/name" 2>/dev/null; then
        (head -c 1 "/dev/input/${event##*/}" >/dev/null && echo "e2e guest: power button" && poweroff -f) &
    fi
done
while true; do sleep 3600; done
INIT
    chmod +x "$root/init"
    pack_initramfs "$root" "$E2E_DIR/initrd.img" 9
    echo "$GUEST_VERSION" >"$E2E_DIR/guest-version"
    log "guest ready in $E2E_DIR ($release)"
fi
log "ready: libvirtd runs, guest kernel and initramfs in $E2E_DIR"
