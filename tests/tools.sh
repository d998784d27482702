#!/usr/bin/env bash
# The two test tools built from crates.io with `cargo install`, cached outside the repository under
# /var/cache/roomcast-test like qemu and the kernel (tests/setup.sh). Only the test suite needs them
# (the README's demo command does not run this). tests/run.sh starts this script in the background
# while the tests compile, and waits for it before running them. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
boot_cache="${ROOMCAST_BOOT_CACHE:-/var/cache/roomcast-test}"
mkdir -p "$boot_cache"

# cargo-deb builds the Debian package (tests/server/build-deb.sh); compiled once from crates.io into
# the cache (about 8.5 min uncached on 2 shared cores, 2026-12-07), then only checked.
if [ ! -x "$boot_cache/cargo-deb/bin/cargo-deb" ]; then
    CARGO_INSTALL_ROOT="$boot_cache/cargo-deb" CARGO_TARGET_DIR="$boot_cache/cargo-deb/build" \
        cargo install --locked --quiet cargo-deb --version 3.8.0
    rm -rf "$boot_cache/cargo-deb/build"
fi
# Garage, the region's S3 object store (tests/region, examples/bench_region.rs; docs/REGION.md): built
# once with `cargo install`, cached outside the repository. Only what a three-node S3 cluster needs:
# no K2V, no metrics, no Consul/Kubernetes discovery, no telemetry, LMDB metadata only. The uncached
# build is the slow part of a fresh machine's setup (see docs/REGION.md, "Cost in CI").
garage_version=2.5.0
if [ ! -x "$boot_cache/garage/bin/garage" ]; then
    CARGO_INSTALL_ROOT="$boot_cache/garage" CARGO_TARGET_DIR="$boot_cache/garage-build" \
        cargo install garage --version "$garage_version" --locked \
        --no-default-features --features bundled-libs,lmdb
    rm -rf "$boot_cache/garage-build"
fi
