#!/usr/bin/env bash
# The whole test suite: the README's test command, also what .ci/run calls.
# Run as root on Debian 12: it installs the system packages the tests use (network namespaces,
# nftables, loop devices, ...), then runs every test. Tests create their own namespaces, bridges
# and loop devices and remove them, also when they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# What each package is for:
#   iproute2   network namespaces, bridges, veth, tbf rate limits (lab tests)
#   nftables   packet loss injected inside a PC namespace (lab tests)
#   iputils-ping  PCs ping the server and each other (lab tests)
#   udpcast    Debian's multicast imager, the reference the lab tests and benchmark compare against
#   util-linux losetup for tests on real block devices
#   e2fsprogs  mkfs.ext4 for realistic disk images
#   zstd       the reference compressor the image benchmark compares against
packages=(iproute2 nftables iputils-ping udpcast util-linux e2fsprogs zstd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

cargo test --all-targets "$@"
