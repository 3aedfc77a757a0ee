#!/usr/bin/env bash
# The main job on a default setup: a local chain run end to end, every step checked.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build as the test suite (dev profile, whole workspace, every target): any
# narrower build resolves other dependency features and compiles RocksDB a second time.
cargo build --workspace --all-targets --locked
exec "${CARGO_TARGET_DIR:-target}/debug/bidchain" demo "$@"
