#!/usr/bin/env bash
# A long search of the consensus simulation: SEEDS seeds per validator count (n = 4, 7, 10)
# starting at BASE. A failure prints the seed and SimConfig to replay it.
#   scripts/simulate.sh 5000 [BASE]
set -euo pipefail
cd "$(dirname "$0")/.."
export SIM_SEEDS="${1:-2000}" SIM_SEED_BASE="${2:-0}"
cargo test --release -p bidchain-consensus --test consensus_sim -- --test-threads=2 safety_and_liveness
