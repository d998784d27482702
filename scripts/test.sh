#!/usr/bin/env bash
# The whole test suite (the README's test command). Network and block-device tests need root; they
# create their own namespaces / loop devices and remove them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
