#!/usr/bin/env bash
# The test suite: formatting, lints (warnings are errors), then every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
# The contracts are their own wasm32 workspace (genesis/build.rs builds them); the unit
# tests of `trading` and of the SDK's host-independent parts run on the host.
cargo fmt --manifest-path contracts/Cargo.toml --all -- --check
cargo clippy --manifest-path contracts/Cargo.toml --workspace --target wasm32-unknown-unknown --locked --offline -- -D warnings
cargo test --manifest-path contracts/Cargo.toml -p bidchain-trading -p bidchain-sdk --locked --offline
cargo clippy --workspace --all-targets --locked -- -D warnings
# Always the whole workspace with every target: a narrower selection resolves other
# features for shared dependencies (libc, ...) and rebuilds RocksDB from C++ source.
# The integration tests start real node processes of the bidchain binary built here.
cargo build --workspace --all-targets --locked
cargo test --workspace --locked
