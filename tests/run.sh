#!/usr/bin/env bash
# The whole test suite: the README's test command, also what .ci/run calls.
# Run as root on Debian 12: it installs the system packages the tests use (network namespaces,
# nftables, loop devices, ...), then runs every test. Tests create their own namespaces, bridges
# and loop devices and remove them, also when they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages (and why each is needed): tests/setup.sh, shared with the demo's README command.
bash tests/setup.sh
boot_cache="${ROOMCAST_BOOT_CACHE:-/var/cache/roomcast-test}"
export ROOMCAST_QEMU="$boot_cache/qemu/usr/bin/qemu-system-x86_64"
export ROOMCAST_KERNEL_DIR="$boot_cache/kernel"
export ROOMCAST_SECUREBOOT_DIR="$boot_cache/secureboot/root"

# cargo-deb and Garage (tests/tools.sh) are built from source on a fresh machine, the slow part of
# its first run: they build while the tests compile, and the tests start once both are there.
bash tests/tools.sh > "${TMPDIR:-/tmp}/roomcast-test-tools.log" 2>&1 &
tools=$!
cargo test --all-targets --no-run "$@"
if ! wait "$tools"; then
    cat "${TMPDIR:-/tmp}/roomcast-test-tools.log" >&2
    echo "tests/tools.sh failed (cargo-deb or Garage could not be built)" >&2
    exit 2
fi
cargo test --all-targets "$@"
