#!/bin/bash
# Install what the VM lane needs, idempotently, on a Debian 12 machine (as root).
#
#   tests/vm/prepare.sh [CACHE_DIR]        (default /var/cache/minirun-vm)
#
# Following the measured recipe in shared/notes/host.md:
#   1. apt: qemu-system-x86 and kmod (depmod), busybox-static (virtme-ng's
#      initramfs), runc (the reference runtime of `make bench-vm`); only if missing,
#      and without recommends (no GTK front-end for qemu).
#   2. the kernel: Debian's versioned *generic* image, linux-image-VERSION-unsigned
#      (the cloud flavour lacks 9p), fetched with `apt-get download` and unpacked with
#      `dpkg-deb -x` -- never `apt-get install linux-image-amd64`, which would upgrade
#      systemd and udev and build an initramfs. Its modules are copied into
#      /lib/modules/VERSION (then `depmod VERSION`) and the image next to them as
#      /lib/modules/VERSION/vmlinuz: there vng takes the guest's modules from the host
#      root it shares (its default, a directory next to the image, would be hidden in
#      the guest when the cache is under /var/cache, a tmpfs there).
#      CACHE_DIR/vmlinuz is a symlink to the image.
#   3. virtme-ng in a venv, CACHE_DIR/venv (vng calls virtme-run: put its bin on PATH).
#
# Environment: VM_KERNEL_PKG=linux-image-6.1.0-NN-amd64-unsigned picks a kernel
# (default: the one a cached install already has, else the one linux-image-amd64
# depends on); VM_VIRTME_NG=virtme-ng==1.42 the pip requirement.
set -euo pipefail

cache=${1:-/var/cache/minirun-vm}
virtme_req=${VM_VIRTME_NG:-virtme-ng==1.42}
python=${VM_PYTHON:-/usr/bin/python3}
export DEBIAN_FRONTEND=noninteractive

say() { echo "prepare-vm: $*"; }
die() { echo "prepare-vm: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt, /lib/modules)"
mkdir -p "$cache"
cache=$(cd "$cache" && pwd -P)

# ---- 1. Debian packages --------------------------------------------------------
apt_updated=0
apt_update() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -q
        apt_updated=1
    fi
}
missing=""
for p in qemu-system-x86 kmod busybox-static runc; do
    case "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" in
        "install ok installed") ;;
        *) missing="$missing $p" ;;
    esac
done
if [ -n "$missing" ]; then
    say "installing:$missing"
    apt_update
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
fi

# ---- 2. the kernel ---------------------------------------------------------------
pkg=${VM_KERNEL_PKG:-}
if [ -z "$pkg" ] && [ -f "$cache/kernel-package" ]; then
    # the kernel set up last time, as long as it is complete (Debian's archive keeps only
    # the current versions: an old one may no longer be downloadable)
    pkg=$(cat "$cache/kernel-package")
    v=${pkg#linux-image-}; v=${v%-unsigned}
    [ -f "/lib/modules/$v/.minirun-vm" ] && [ -f "/lib/modules/$v/vmlinuz" ] || pkg=""
fi
if [ -z "$pkg" ]; then
    current() { apt-cache depends linux-image-amd64 2>/dev/null |
                awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'; }
    dep=$(current)
    if [ -z "$dep" ]; then apt_update; dep=$(current); fi
    [ -n "$dep" ] || die "apt-cache depends linux-image-amd64 names no versioned kernel package"
    pkg=$dep-unsigned
fi
case "$pkg" in
    linux-image-*-amd64-unsigned) ;;
    *) die "VM_KERNEL_PKG=$pkg: expected linux-image-VERSION-amd64-unsigned (the generic flavour)" ;;
esac
version=${pkg#linux-image-}
version=${version%-unsigned}
moddir=/lib/modules/$version

if [ -f "$moddir/vmlinuz" ] && [ -f "$moddir/modules.dep" ] && [ -f "$moddir/.minirun-vm" ]; then
    say "kernel $version: already in $moddir"
else
    if [ -e "$moddir" ] && [ ! -f "$moddir/.minirun-vm" ]; then
        die "$moddir exists and was not made by this script (an installed kernel?): not touching it"
    fi
    deb=$(ls "$cache"/"${pkg}"_*.deb 2>/dev/null | tail -n 1 || true)
    if [ -z "$deb" ]; then
        say "downloading $pkg"
        apt_update
        # _apt cannot write into a root-only cache: download in a world-writable temp dir
        dl=$(mktemp -d /tmp/minirun-vm-dl.XXXXXX)
        chmod 0755 "$dl"
        (cd "$dl" && { apt-get download "$pkg" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true; })
        deb=$(ls "$dl"/"${pkg}"_*.deb 2>/dev/null | tail -n 1 || true)
        [ -n "$deb" ] || { rm -rf "$dl"; die "apt-get download $pkg fetched nothing"; }
        mv "$deb" "$cache/"
        rm -rf "$dl"
        deb=$cache/$(basename "$deb")
    fi
    say "unpacking $(basename "$deb")"
    x=$(mktemp -d "$cache/extract.XXXXXX")
    trap 'rm -rf "$x"' EXIT
    dpkg-deb -x "$deb" "$x"
    [ -f "$x/boot/vmlinuz-$version" ] || die "$deb has no boot/vmlinuz-$version"
    [ -d "$x/lib/modules/$version" ] || die "$deb has no lib/modules/$version"
    rm -rf "$moddir"  # ours (marker checked above) or absent
    mkdir -p /lib/modules
    cp -a "$x/lib/modules/$version" "$moddir.partial"
    cp "$x/boot/vmlinuz-$version" "$moddir.partial/vmlinuz"
    cp "$x/boot/config-$version" "$moddir.partial/config" 2>/dev/null || true
    echo "$pkg (unpacked by minirun's tests/vm/prepare.sh for the VM lane)" > "$moddir.partial/.minirun-vm"
    mv "$moddir.partial" "$moddir"
    depmod "$version"
    rm -rf "$x"
    trap - EXIT
    say "kernel $version: modules in $moddir, image $moddir/vmlinuz"
fi
echo "$pkg" > "$cache/kernel-package"
ln -sfn "$moddir/vmlinuz" "$cache/vmlinuz"

# ---- 3. virtme-ng ----------------------------------------------------------------
venv=$cache/venv
stamp=$venv/.installed-$(echo "$virtme_req" | tr -c 'A-Za-z0-9.=_-' '_')
if [ -x "$venv/bin/vng" ] && [ -f "$stamp" ]; then
    say "virtme-ng: $venv ($virtme_req)"
else
    [ -x "$venv/bin/python3" ] || "$python" -m venv "$venv"
    say "pip install $virtme_req into $venv"
    env -u PYTHONDONTWRITEBYTECODE PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
        "$venv/bin/pip" install -q "$virtme_req" 2>&1 | grep -v "^WARNING: Location 'file:" || true
    "$venv/bin/vng" --version >/dev/null || die "pip install $virtme_req: $venv/bin/vng does not run"
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi
say "ready: kernel $cache/vmlinuz -> $moddir/vmlinuz, vng $venv/bin/vng"
