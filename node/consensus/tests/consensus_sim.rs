//! The deterministic simulation as tests: many seeds with every fault on, reproducibility,
//! and proof that the checker catches a broken rule.
//!
//! `SIM_SEEDS=N` runs N seeds per size instead of the default and `SIM_SEED_BASE` moves the
//! range; scripts/simulate.sh runs long searches.

// Test code: a failed unwrap or panic is a failed test, which is the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use bidchain_consensus::Faults;
use bidchain_consensus::sim::{SimConfig, Violation, run};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Seeds `SIM_SEED_BASE + offset ..` for one validator count: `SIM_SEEDS` of them, or
/// `default_seeds` (300 in all across n = 4, 7, 10, about a minute and a half of CPU).
fn check_many(n: usize, offset: u64, default_seeds: u64) {
    let first_seed = env_u64("SIM_SEED_BASE", 0) + offset;
    for seed in first_seed..first_seed + env_u64("SIM_SEEDS", default_seeds) {
        let report = run(SimConfig::adversarial(n, seed));
        assert!(
            report.violation.is_none(),
            "n={n} seed={seed}: {:?} (replay: SimConfig::adversarial({n}, {seed}))",
            report.violation
        );
    }
}

#[test]
fn safety_and_liveness_n4() {
    check_many(4, 1_000_000, 150);
}

#[test]
fn safety_and_liveness_n7() {
    check_many(7, 2_000_000, 100);
}

#[test]
fn safety_and_liveness_n10() {
    check_many(10, 3_000_000, 50);
}

#[test]
fn same_seed_same_run_byte_for_byte() {
    let a = run(SimConfig::adversarial(4, 42));
    let b = run(SimConfig::adversarial(4, 42));
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.events, b.events);
    assert_eq!(a.heights, b.heights);
    let c = run(SimConfig::adversarial(4, 43));
    assert_ne!(a.trace, c.trace);
}

#[test]
fn byzantine_faults_are_exercised() {
    let report = run(SimConfig::adversarial(4, 7));
    assert!(
        report.equivocations_seen > 0,
        "no equivocation reached an honest node"
    );
    assert!(
        report.heights.iter().all(|&h| h >= 3),
        "{:?}",
        report.heights
    );
}

/// A core that prevotes while ignoring its lock breaks agreement, and the checker says so.
#[test]
fn checker_catches_a_core_that_skips_the_lock() {
    let broken = Faults { ignore_lock: true };
    let found = (0..400u64).find_map(|seed| {
        let mut config = SimConfig::adversarial(4, 90_000 + seed);
        config.faults = broken;
        match run(config).violation {
            Some(v @ Violation::Agreement { .. }) => Some((seed, v)),
            _ => None,
        }
    });
    assert!(found.is_some(), "no seed exposed the broken lock rule");
}
