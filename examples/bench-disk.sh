#!/usr/bin/env bash
# Builds the two realistic disk images the image benchmark (examples/bench_image.rs) runs on, once:
#   v1.img  an ext4 disk holding a Debian bookworm system made with debootstrap (kernel included)
#   v2.img  the same disk after `apt-get install` of a few more packages in a chroot, the way a master
#           PC changes between two campaigns (in place, so most blocks stay where they were)
# Free space is zeroed on both (fstrim on the loop device punches holes in the image file).
# Usage: bench-disk.sh DIR   (run as root; needs debootstrap, e2fsprogs, util-linux and the Debian mirror)
set -euo pipefail
dir=$1
mirror=${ROOMCAST_BENCH_MIRROR:-http://deb.debian.org/debian}
size=${ROOMCAST_BENCH_DISK_SIZE:-2G}
mkdir -p "$dir"
cd "$dir"
[ -f v1.img ] && [ -f v2.img ] && exit 0
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null

mnt=$(mktemp -d "$PWD/mnt.XXXXXX")
cleanup() {
    for m in "$mnt/proc" "$mnt/sys" "$mnt/dev" "$mnt"; do
        mountpoint -q "$m" && umount -l "$m"
    done
    rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT

zero_free_space() {
    # the .deb files apt downloaded and removed were written once: give their blocks back as holes
    fstrim "$mnt" || {
        dd if=/dev/zero of="$mnt/zero.fill" bs=1M status=none || true
        rm -f "$mnt/zero.fill"
    }
}

if [ ! -f v1.img ]; then
    rm -f v1.tmp
    truncate -s "$size" v1.tmp
    mkfs.ext4 -q -L roomcast-bench v1.tmp
    mount -o loop v1.tmp "$mnt"
    debootstrap --include=linux-image-amd64,systemd-sysv,openssh-server,locales bookworm "$mnt" "$mirror"
    chroot "$mnt" apt-get clean
    zero_free_space
    umount "$mnt"
    mv v1.tmp v1.img
fi

if [ ! -f v2.img ]; then
    rm -f v2.tmp
    cp --sparse=always v1.img v2.tmp
    mount -o loop v2.tmp "$mnt"
    mount -t proc proc "$mnt/proc"
    cp /etc/resolv.conf "$mnt/etc/resolv.conf" 2>/dev/null || true
    chroot "$mnt" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    chroot "$mnt" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        vim-nox curl git python3 >/dev/null
    chroot "$mnt" apt-get clean
    umount "$mnt/proc"
    zero_free_space
    umount "$mnt"
    mv v2.tmp v2.img
fi
