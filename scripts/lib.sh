# Shell functions shared by scripts/e2e-setup.sh (`make e2e`) and scripts/xen-e2e.sh (`make xen-e2e`): the
# Debian packages on the host, and a guest kernel with its busybox initramfs built from Debian's packages.
# Sourced, not run. The caller defines `log MESSAGE` and `die MESSAGE` and sets SUDO ("" as root, or sudo).

ensure_packages() {  # ensure_packages PKG...: apt-get install those that are not installed
    local pkg missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

kernel_package() {  # kernel_package META: the linux-image-<release> package a meta package depends on
    local pkg
    pkg=$(apt-cache depends "$1" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [ -n "$pkg" ] || die "cannot find the linux-image-* that $1 depends on (apt-get update?)"
    echo "$pkg"
}

download_deb() {  # download_deb DIR PKG: apt-get download PKG into DIR unless a PKG_*.deb is there
    ls "$1/$2"_*.deb >/dev/null 2>&1 && return 0
    log "downloading $2"
    (cd "$1" && apt-get download -qq "$2" 2>/dev/null) || die "apt-get download $2 failed"
}

copy_modules() {  # copy_modules KERNEL_MODULES_DIR DEST [--optional] MODULE...
    # Copies each module (a name, or a path under kernel/ such as drivers/acpi/button) as DEST/NN-name.ko,
    # decompressed, numbered in the order given: busybox insmod resolves no dependencies, so the initramfs's
    # init loads them by glob in that order. A missing module is fatal unless --optional (built in, then).
    local modules=$1 dest=$2 optional=0 index=10 module found target
    shift 2
    [ "${1:-}" = --optional ] && { optional=1; shift; }
    mkdir -p "$dest"
    for module in "$@"; do
        found=$(find "$modules/kernel" -path "*/$module.ko*" | head -n1 || true)  # head may SIGPIPE find
        target="$dest/$index-$(basename "$module").ko"
        case "$found" in
            "") ((optional)) || die "module $module is not in $modules" ;;
            *.xz) xz -dc "$found" >"$target" ;;
            *) cp "$found" "$target" ;;
        esac
        index=$((index + 1))
    done
}

pack_initramfs() {  # pack_initramfs DIR OUT [GZIP_LEVEL]: DIR as a newc cpio archive, gzipped
    (cd "$1" && find . | cpio -o -H newc --quiet | gzip "-${3:-9}") >"$2"
}
