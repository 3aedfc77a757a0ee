#!/usr/bin/env bash
# The test suite: formatting, lints (warnings are errors), then every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests start real node processes of this binary.
cargo build -p bidchain-cli --bin bidchain --locked
cargo test --workspace --locked
