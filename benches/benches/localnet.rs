//! A local network of 4 validator processes (and one observer) over libp2p on this machine:
//!
//! 1. blocks/s of an empty-ish chain (the lowest block interval genesis allows, an empty
//!    block whenever nothing is pending) and submit→commit latency of a trickle of
//!    transactions (one every 100 ms, round-robin over the validators' APIs, commit seen by
//!    polling the receiving node every 5 ms);
//! 2. a load phase that leaves a few thousand transactions in the chain, then an observer
//!    started from genesis: its catch-up speed in blocks/s and tx/s.
//!
//! cargo build --release --workspace && cargo bench --workspace --bench localnet
//!
//! Needs the release `bidchain` binary (or `BIDCHAIN_BIN`). Writes
//! `$CARGO_TARGET_DIR/bench-results/localnet.json` (or `$BENCH_OUT`). `BENCH_SECONDS` sets
//! the length of the latency phase (default 20).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation
)]

use std::time::{Duration, Instant};

use bidchain_benches::metric;
use bidchain_cli::client::Client;
use bidchain_cli::localnet::{Localnet, LocalnetSpec};
use bidchain_cli::process::{NodeProcess, locate_bidchain};
use bidchain_genesis::ConsensusParams;
use bidchain_node::api::TxStatus;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{AccountId, Height, Nonce};
use bidchain_runtime::tx::{Role, SignedTransaction};

const VALIDATORS: usize = 4;
const TRICKLE_EVERY: Duration = Duration::from_millis(100);
const POLL_EVERY: Duration = Duration::from_millis(5);
/// Transactions each validator account sends in the load phase.
const LOAD_TXS_PER_SENDER: u64 = 2_500;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn height(client: &Client) -> u64 {
    client.status().await.unwrap().height.0
}

async fn wait_committed(client: &Client, tx: &SignedTransaction) -> Duration {
    let start = Instant::now();
    let hash = tx.hash();
    loop {
        if let Ok(answer) = client.tx(&hash).await
            && answer.status != TxStatus::Pending
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "tx {hash} not committed"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

struct Sender {
    key: Keypair,
    nonce: u64,
}

impl Sender {
    fn next_tx(&mut self, net: &Localnet) -> SignedTransaction {
        let tx = bidchain_node::testing::create_account_tx_on(
            &net.genesis.chain_id,
            &self.key,
            Nonce(self.nonce),
            &Keypair::generate(),
            Role::Bidder,
        );
        self.nonce += 1;
        tx
    }
}

/// Phase 1: blocks/s and the latency of single transactions.
async fn trickle(
    net: &Localnet,
    nodes: &[NodeProcess],
    senders: &mut [Sender],
    seconds: u64,
) -> serde_json::Value {
    let h0 = height(&nodes[0].client).await;
    let start = Instant::now();
    let mut waiting = Vec::new();
    let mut i = 0usize;
    while start.elapsed() < Duration::from_secs(seconds) {
        let to = i % VALIDATORS;
        let tx = senders[to].next_tx(net);
        let client = nodes[to].client.clone();
        client.submit(&tx).await.unwrap();
        waiting.push(tokio::spawn(
            async move { wait_committed(&client, &tx).await },
        ));
        i += 1;
        tokio::time::sleep(TRICKLE_EVERY).await;
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let h1 = height(&nodes[0].client).await;
    let mut latencies_ms = Vec::new();
    for task in waiting {
        latencies_ms.push(task.await.unwrap().as_secs_f64() * 1000.0);
    }
    latencies_ms.sort_by(f64::total_cmp);
    let blocks_per_s = (h1 - h0) as f64 / elapsed_s;
    let (p50, p90, p99) = (
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 90.0),
        percentile(&latencies_ms, 99.0),
    );
    println!(
        "localnet 4 validators: {} blocks in {elapsed_s:.1} s = {blocks_per_s:.1} blocks/s; \
         commit latency of {} txs p50 {p50:.0} ms p90 {p90:.0} ms p99 {p99:.0} ms",
        h1 - h0,
        latencies_ms.len()
    );
    serde_json::json!({
        "seconds": elapsed_s,
        "blocks": h1 - h0,
        "blocks_per_s": blocks_per_s,
        "txs": latencies_ms.len(),
        "commit_latency_ms_p50": p50,
        "commit_latency_ms_p90": p90,
        "commit_latency_ms_p99": p99,
    })
}

/// Fills the chain: each validator's account sends `LOAD_TXS_PER_SENDER` transactions
/// to its own node, the four senders at once, each as fast as its node admits them.
/// Returns committed tx/s from the first submission to the last commit.
async fn load(net: &Localnet, nodes: &[NodeProcess], senders: &mut [Sender]) -> serde_json::Value {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (sender, node) in senders.iter_mut().zip(nodes) {
        let txs: Vec<SignedTransaction> = (0..LOAD_TXS_PER_SENDER)
            .map(|_| sender.next_tx(net))
            .collect();
        let client = node.client.clone();
        tasks.push(tokio::spawn(async move {
            for tx in &txs {
                while client.submit(tx).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            let submitted = start.elapsed();
            wait_committed(&client, txs.last().expect("a load")).await;
            submitted
        }));
    }
    let mut submitted_s: f64 = 0.0;
    for task in tasks {
        submitted_s = submitted_s.max(task.await.unwrap().as_secs_f64());
    }
    let seconds = start.elapsed().as_secs_f64();
    let txs = LOAD_TXS_PER_SENDER * senders.len() as u64;
    let per_s = txs as f64 / seconds;
    println!(
        "load: {txs} txs from 4 concurrent submitters, all submitted in {submitted_s:.2} s, \
         all committed in {seconds:.2} s = {per_s:.0} committed tx/s"
    );
    serde_json::json!({
        "txs": txs,
        "submitted_s": submitted_s,
        "committed_s": seconds,
        "committed_txs_per_s": per_s,
    })
}

/// Phase 2: fill the chain, then time an observer syncing it from genesis.
async fn observer_catch_up(
    net: &mut Localnet,
    nodes: &[NodeProcess],
    senders: &mut [Sender],
) -> serde_json::Value {
    let bin = locate_bidchain().unwrap();
    let load = load(net, nodes, senders).await;
    let target = height(&nodes[0].client).await;
    let txs = metric(&nodes[0].client, "bidchain_txs_committed_total").await;
    let start = Instant::now();
    let observer = net.start_node(&bin, VALIDATORS).await.unwrap();
    observer
        .client
        .wait_height(Height(target), Duration::from_secs(600))
        .await
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let (blocks_per_s, txs_per_s) = (target as f64 / seconds, txs as f64 / seconds);
    println!(
        "observer catch-up: {target} blocks, {txs} txs in {seconds:.2} s (from process start) = \
         {blocks_per_s:.1} blocks/s, {txs_per_s:.0} tx/s"
    );
    serde_json::json!({
        "load": load,
        "blocks": target,
        "txs": txs,
        "seconds_from_process_start": seconds,
        "blocks_per_s": blocks_per_s,
        "txs_per_s": txs_per_s,
    })
}

async fn run() -> serde_json::Value {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut spec = LocalnetSpec::new(VALIDATORS, 1);
    spec.base_port = 0;
    spec.empty_block_interval_ms = 1;
    spec.consensus = ConsensusParams {
        block_interval_ms: 10,
        ..ConsensusParams::default()
    };
    let mut net = Localnet::create_or_load(&dir.path().join("net"), &spec).unwrap();
    let bin = locate_bidchain().unwrap();
    let mut nodes = Vec::new();
    for i in 0..VALIDATORS {
        nodes.push(net.start_node(&bin, i).await.unwrap());
    }
    let last = &nodes[VALIDATORS - 1].client;
    last.wait_height(Height(2), Duration::from_secs(60))
        .await
        .unwrap();
    let mut senders: Vec<Sender> = (0..VALIDATORS)
        .map(|i| Sender {
            key: net.key(i).unwrap(),
            nonce: 0,
        })
        .collect();
    for sender in &senders {
        let id = AccountId::of(&sender.key.public());
        nodes[0].client.account(&id).await.unwrap();
    }
    let trickle = trickle(&net, &nodes, &mut senders, seconds).await;
    let observer = observer_catch_up(&mut net, &nodes, &mut senders).await;
    serde_json::json!({
        "validators": VALIDATORS,
        "block_interval_ms": spec.consensus.block_interval_ms,
        "empty_block_interval_ms": spec.empty_block_interval_ms,
        "empty_ish_chain": trickle,
        "observer_catch_up": observer,
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(run());
    let out = bidchain_benches::write_result("localnet", result).unwrap();
    println!("wrote {out}");
}
