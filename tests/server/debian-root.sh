#!/usr/bin/env bash
# Prints the path of a cached Debian 12 root (a gzip'd tarball under /var/cache/roomcast-test/),
# making it first when it is not there: `debootstrap --variant=minbase bookworm` from the mirror this
# machine's apt uses, with man-db (for `man roomcast-deploy`), then `apt-get update` inside so that
# installing the package only downloads its dependencies. Idempotent; the package test unpacks a
# fresh copy of it for each run (tests/server/).
set -euo pipefail
cache="${ROOMCAST_BOOT_CACHE:-/var/cache/roomcast-test}"
tarball="$cache/debian12-root.tar.gz"
if [ -s "$tarball" ]; then echo "$tarball"; exit 0; fi
command -v debootstrap >/dev/null || { echo "debootstrap missing: run tests/setup.sh" >&2; exit 2; }
mirror="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
[ -n "$mirror" ] || mirror="$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list)"
mkdir -p "$cache"
work="$(mktemp -d "$cache/debian12-root.XXXXXX")"
trap 'umount -R "$work/root/proc" 2>/dev/null || true; rm -rf "$work"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include=man-db bookworm "$work/root" "$mirror" >"$work/log" 2>&1 \
    || { tail -20 "$work/log" >&2; exit 2; }
chroot "$work/root" apt-get update -qq >/dev/null
chroot "$work/root" apt-get clean
tar -C "$work/root" -czf "$work/root.tar.gz" .
mv "$work/root.tar.gz" "$tarball"
echo "debootstrap + apt-get update + tar: $(( $(date +%s) - start )) s" >&2
echo "$tarball"
