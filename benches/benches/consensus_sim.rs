//! Simulated heights per second of the consensus core: n validators over the deterministic
//! simulated network with no faults, timed on the wall clock. What it measures is the cost
//! of the core itself (signing, verifying, vote counting) per decided height.
//!
//! cargo bench -p bidchain-benches --bench consensus_sim
//!
//! Writes `target/bench-results/consensus_sim.json` (or `$BENCH_OUT`) and prints one line
//! per n.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::cast_precision_loss)]

use std::time::Instant;

use bidchain_consensus::Faults;
use bidchain_consensus::sim::{self, SimConfig};

const HEIGHTS: u64 = 100;

fn run(n: usize) -> serde_json::Value {
    let config = SimConfig {
        n,
        byzantine: 0,
        seed: 1,
        delay_max_ms: 20,
        loss_per_mille: 0,
        dup_per_mille: 0,
        partitions: false,
        crashes: false,
        heal_at_ms: 0,
        heights_after_heal: HEIGHTS,
        liveness_bound_ms: 10_000_000,
        faults: Faults::default(),
    };
    let start = Instant::now();
    let report = sim::run(config);
    let wall_s = start.elapsed().as_secs_f64();
    assert!(report.violation.is_none(), "{:?}", report.violation);
    let heights = report.heights.iter().copied().min().unwrap_or(0);
    let per_s = heights as f64 / wall_s;
    println!(
        "consensus_sim n={n}: {heights} heights in {wall_s:.3} s wall = {per_s:.1} heights/s ({} events, {} ms simulated)",
        report.events, report.end_ms
    );
    serde_json::json!({
        "n": n,
        "heights": heights,
        "wall_s": wall_s,
        "heights_per_s": per_s,
        "events": report.events,
        "simulated_ms": report.end_ms,
    })
}

fn main() {
    let results: Vec<_> = [4, 16].into_iter().map(run).collect();
    let out = bidchain_benches::write_result("consensus_sim", serde_json::json!(results)).unwrap();
    println!("wrote {out}");
}
