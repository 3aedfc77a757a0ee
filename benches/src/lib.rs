//! Shared set-up for the benchmarks in `benches/`.
