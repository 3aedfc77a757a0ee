//! Shared set-up for the benchmarks in `benches/`.

/// What machine a result was measured on, for the JSON every benchmark writes: CPU model,
/// cores available to this process, memory and kernel, as Linux reports them.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "memory_mib": mem_kib / 1024,
        "kernel": kernel.trim(),
        "arch": std::env::consts::ARCH,
    })
}

/// Writes a benchmark's JSON to `$BENCH_OUT`, or `$CARGO_TARGET_DIR/bench-results/NAME.json`,
/// with the machine and build profile it ran on; returns the path written.
pub fn write_result(name: &str, result: serde_json::Value) -> std::io::Result<String> {
    let out = std::env::var("BENCH_OUT").unwrap_or_else(|_| {
        let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        format!("{dir}/bench-results/{name}.json")
    });
    let doc = serde_json::json!({
        "benchmark": name,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine": machine(),
        "result": result,
    });
    if let Some(parent) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    Ok(out)
}

/// A counter or gauge from a node's `/metrics` (Prometheus' text format), 0 if absent.
/// Panics if the node does not answer: a bench cannot go on without it.
#[allow(clippy::unwrap_used)]
pub async fn metric(client: &bidchain_cli::client::Client, name: &str) -> u64 {
    let text = client.metrics().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}
