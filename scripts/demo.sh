#!/usr/bin/env bash
# The main job on a default setup: a local chain run end to end, every step checked.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The dev profile, so the demo shares one build with the test suite.
cargo build -p bidchain-cli --bin bidchain
exec "${CARGO_TARGET_DIR:-target}/debug/bidchain" demo "$@"
