//! The end-to-end load benchmark: a local network of validator processes on this machine,
//! driven open-loop with signed bid transactions (sealed-bid submissions, then
//! replacements) through the nodes' HTTP APIs. Each bidder bids on one tender, at most
//! `MAX_BIDS_PER_TENDER` bidders a tender, so the rules accept every bid; the sampled
//! transactions' receipts are checked, and any rejection is reported by code.
//!
//! Reports, over a measurement window after a warm-up: committed tx/s, submit→commit
//! latency p50/p90/p99 (every 20th transaction; commit time = when node 0 first reports
//! the height that holds it, polled every 10 ms), CPU (% of one core) and peak memory per
//! node, the load generator's own CPU (it shares the cores), and bytes on disk per committed transaction; then how fast an observer started
//! afterwards syncs the chain from genesis (committed tx/s while catching up), and what
//! a validator keeps per transaction once its database is compacted.
//!
//! cargo build --release --workspace --all-targets && cargo bench --workspace --bench load
//!
//! Settings (environment): `LOAD_VALIDATORS` (4), `LOAD_RATE` offered tx/s (2000; 0 = as
//! fast as the nodes commit: about `UNPACED_WINDOW_TXS` in the mempools or on their way,
//! which finds the capacity without overflowing the mempools), `LOAD_SECONDS` measured (60),
//! `LOAD_WARMUP_SECONDS` (10), `LOAD_MIX` `bids` | `accounts` | `mixed` (bids), `LOAD_BIDDERS` (the rate, at least 400),
//! `LOAD_BATCH_MS` (0: one `POST /txs` per transaction; else every that many ms each node
//! gets the transactions due since in one `POST /txs/batch`), `LOAD_MAX_WAIT_MS` (the
//! nodes' `mempool.max_wait_ms`: 0, their default, never refuses clients as behind),
//! `LOAD_BLOCK_TXS` (the chain's `max_block_txs`: 5,000, genesis's default). A
//! submission refused as `busy` is resent after `BUSY_BACKOFF`, as a client told to retry
//! shortly would; latency still counts from when it was due. Needs the release
//! `bidchain` binary (or `BIDCHAIN_BIN`). Writes `$CARGO_TARGET_DIR/bench-results/load.json`
//! (or `$BENCH_OUT`) and prints a one-line summary.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bidchain_benches::metric;
use bidchain_cli::client::{Client, Refused, while_busy};
use bidchain_cli::localnet::{Localnet, LocalnetSpec};
use bidchain_cli::process::{NodeProcess, locate_bidchain};
use bidchain_cli::trading::{self, contract_names as names};
use bidchain_genesis::ConsensusParams;
use bidchain_node::api::{MAX_SUBMIT_BATCH_TXS, SubmitBatch};
use bidchain_node::mempool::{DEFAULT_MAX_TXS, DEFAULT_MAX_WAIT_MS, MempoolConfig};
use bidchain_node::storage::Storage;
use bidchain_node::testing::create_account_tx_on;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{ChainId, Height, Nonce};
use bidchain_runtime::receipt::TxOutcome;
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{Role, SignedTransaction, TxHash};
use bidchain_trading::tender::{MAX_BIDS_PER_TENDER, TenderCall, TenderParams};
use bidchain_trading::{Label, TenderId};

/// Every `SAMPLE_EVERY`th transaction's latency is measured.
const SAMPLE_EVERY: usize = 20;
/// Submissions in flight per validator API before the sender waits (then the offered rate
/// is not met, and the report says so).
const MAX_IN_FLIGHT_PER_NODE: usize = 512;
/// Bidders per tender: each bidder bids on one tender, and a tender takes at most this
/// many, so every bid the load sends is one the rules accept (a first submission, then
/// replacements). The bench counts any rejection it samples.
const BIDDERS_PER_TENDER: usize = MAX_BIDS_PER_TENDER;
/// Transactions signed per second of the run when sending as fast as admitted: above
/// what the issue asks of four validators (10,000), so that the supply is not the limit.
const UNLIMITED_SUPPLY_PER_S: u64 = 12_000;
/// Sending as fast as admitted, the transactions in the fullest node's mempool plus those
/// in requests not yet answered stay at about this many (the mempools are polled, so it
/// can be passed by what is admitted between two polls). Every transaction reaches every
/// node's mempool, so this is half of one (`DEFAULT_MAX_TXS`): the pools do not fill, and
/// no `mempool_full` refusal starts a cascade of `nonce_gap` ones. It is still 2.5 s of
/// blocks at 10,000 tx/s, enough to keep them full.
const UNPACED_WINDOW_TXS: u64 = DEFAULT_MAX_TXS as u64 / 2;
/// How often unpaced senders learn how full the nodes' mempools are.
const POOL_POLL: Duration = Duration::from_millis(50);
/// How long the report waits after the last submission for the tail to commit.
const TAIL: Duration = Duration::from_secs(3);
/// After an unpaced run, how long the report waits at most for the window's backlog (a
/// few seconds of blocks) to commit.
const MAX_DRAIN: Duration = Duration::from_secs(30);
/// How long a sender first waits before resending what a node refused as `busy` (then
/// twice as long each time, up to eight times).
const BUSY_BACKOFF: Duration = Duration::from_millis(100);
/// A sender gives a transaction up after it has been refused as `busy` for this long.
const MAX_BUSY_RETRY: Duration = Duration::from_secs(30);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mix {
    Bids,
    Accounts,
    Mixed,
}

struct Settings {
    validators: usize,
    rate: u64,
    seconds: u64,
    warmup_seconds: u64,
    mix: Mix,
    bidders: usize,
    /// 0: one request per transaction; else a batch per node every this many ms.
    batch_ms: u64,
    /// The nodes' `mempool.max_wait_ms`.
    max_wait_ms: u64,
    /// The chain's `max_block_txs`.
    block_txs: u32,
}

impl Settings {
    fn from_env() -> Settings {
        let mix = match std::env::var("LOAD_MIX").as_deref() {
            Ok("accounts") => Mix::Accounts,
            Ok("mixed") => Mix::Mixed,
            _ => Mix::Bids,
        };
        let rate = env("LOAD_RATE", 2_000);
        let rate_or_default = if rate == 0 {
            UNLIMITED_SUPPLY_PER_S
        } else {
            rate
        };
        Settings {
            validators: env("LOAD_VALIDATORS", 4),
            rate,
            seconds: env("LOAD_SECONDS", 60),
            warmup_seconds: env("LOAD_WARMUP_SECONDS", 10),
            mix,
            // About one transaction a second per bidder, as in a real tender. (Open-loop
            // submissions from one sender can overtake one another; a node holds one up
            // to `MAX_NONCE_AHEAD` past the next nonce until the gap fills.)
            bidders: env("LOAD_BIDDERS", rate_or_default.max(400) as usize),
            batch_ms: env("LOAD_BATCH_MS", 0),
            max_wait_ms: env("LOAD_MAX_WAIT_MS", DEFAULT_MAX_WAIT_MS),
            block_txs: env("LOAD_BLOCK_TXS", ConsensusParams::default().max_block_txs),
        }
    }

    /// The offered load, for the summary.
    fn offered(&self) -> String {
        if self.rate == 0 {
            format!("all that commits ({UNPACED_WINDOW_TXS} in flight)")
        } else {
            format!("{} tx/s", self.rate)
        }
    }

    /// Transactions signed up front: the offered rate over the whole run, or a fixed
    /// supply when sending as fast as admitted.
    fn total_txs(&self) -> usize {
        let rate = if self.rate == 0 {
            UNLIMITED_SUPPLY_PER_S
        } else {
            self.rate
        };
        (rate * (self.seconds + self.warmup_seconds)) as usize
    }
}

/// One bidder and what it has sent.
struct Bidder {
    key: Keypair,
    nonce: u64,
    submitted: bool,
}

fn tender_id(t: usize) -> TenderId {
    TenderId::new(&format!("LOAD-{t}")).unwrap()
}

fn tenders(bidders: usize) -> usize {
    bidders.div_ceil(BIDDERS_PER_TENDER)
}

/// A bid transaction of bidder `b` on its tender: its first submission there, then
/// replacements (each one a new sealed bid, as a bidder revising its price would send).
fn bid_tx(chain: &ChainId, bidder: &mut Bidder, b: usize, serial: usize) -> SignedTransaction {
    let id = tender_id(b / BIDDERS_PER_TENDER);
    let content = format!("bid {serial}").into_bytes();
    let bid = trading::sealed_bid(
        &bidder.key,
        &id,
        &trading::sha256(&content),
        trading::sha256(&[b"enc:".as_slice(), &content].concat()),
        trading::fingerprints(&format!("m{serial}"), &format!("c{serial}"), "", ""),
    );
    let call = if bidder.submitted {
        TenderCall::Replace { tender: id, bid }
    } else {
        bidder.submitted = true;
        TenderCall::Submit { tender: id, bid }
    };
    let nonce = Nonce(bidder.nonce);
    bidder.nonce += 1;
    trading::call_tx(chain, &bidder.key, nonce, names::TENDER, &call).unwrap()
}

/// Signs the whole load up front, so that signing does not compete with the nodes for
/// the CPU during the measurement. Transactions of one sender go to one node, in order.
fn sign_load(
    settings: &Settings,
    chain: &ChainId,
    bidders: &mut [Bidder],
    openers: &mut [Bidder],
) -> Vec<Vec<SignedTransaction>> {
    let mut per_node: Vec<Vec<SignedTransaction>> = vec![Vec::new(); settings.validators];
    let per_node_bidders = bidders.len() / settings.validators;
    for serial in 0..settings.total_txs() {
        let node = serial % settings.validators;
        let account_tx = match settings.mix {
            Mix::Bids => false,
            Mix::Accounts => true,
            Mix::Mixed => serial % 10 == 0,
        };
        let tx = if account_tx {
            // Each node's validator account (the hub or a center) opens bidder accounts
            // through its own node, so one sender's nonces arrive in order.
            let opener = &mut openers[node];
            let nonce = Nonce(opener.nonce);
            opener.nonce += 1;
            create_account_tx_on(
                chain,
                &opener.key,
                nonce,
                &Keypair::generate(),
                Role::Bidder,
            )
        } else {
            let round = serial / settings.validators;
            let b = node * per_node_bidders + round % per_node_bidders;
            bid_tx(chain, &mut bidders[b], b, serial)
        };
        per_node[node].push(tx);
    }
    per_node
}

/// Wall time when node 0 first reported each height.
type Seen = Arc<Mutex<BTreeMap<u64, Instant>>>;

async fn watch_heights(client: Client, seen: Seen, stop: Arc<std::sync::atomic::AtomicBool>) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Ok(status) = client.status().await {
            seen.lock()
                .unwrap()
                .entry(status.height.0)
                .or_insert_with(Instant::now);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A transaction whose latency is measured.
struct Sample {
    hash: TxHash,
    node: usize,
    /// When it was due: latency counts from here.
    due: Instant,
    /// When the sender got the node's answer that admitted it (after any `busy`
    /// refusals).
    admitted: Arc<OnceLock<Instant>>,
}

#[derive(Default)]
struct Sent {
    samples: Vec<Sample>,
    /// Refused for good (a `busy` refusal counts only once the sender gave up).
    refused: BTreeMap<String, u64>,
    /// Requests refused as `busy` and resent.
    busy_resent: u64,
    sent: u64,
}

impl Sent {
    fn add(&mut self, other: Sent) {
        self.samples.extend(other.samples);
        for (code, n) in other.refused {
            *self.refused.entry(code).or_default() += n;
        }
        self.busy_resent += other.busy_resent;
        self.sent += other.sent;
    }
}

type Refusals = Arc<Mutex<BTreeMap<String, u64>>>;

/// Sends until answered with anything but `busy` (the node is behind, or its batch
/// admission is full), resending after [`BUSY_BACKOFF`] for at most [`MAX_BUSY_RETRY`];
/// counts the resends in `resent`.
async fn send_until_not_busy<T, Fut>(
    resent: &AtomicU64,
    send: impl FnMut() -> Fut,
) -> anyhow::Result<T>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let count = || {
        resent.fetch_add(1, Ordering::Relaxed);
    };
    while_busy(MAX_BUSY_RETRY, BUSY_BACKOFF, count, send).await
}

/// A sample of the `i`th transaction to node `node`, if it is one.
fn sample(i: usize, tx: &SignedTransaction, node: usize, due: Instant) -> Option<Sample> {
    i.is_multiple_of(SAMPLE_EVERY).then(|| Sample {
        hash: tx.hash(),
        node,
        due,
        admitted: Arc::default(),
    })
}

fn count_refusal(refused: &Refusals, err: &anyhow::Error) {
    let code = err
        .downcast_ref::<Refused>()
        .map_or_else(|| "transport".to_owned(), |r| r.code.clone());
    *refused.lock().unwrap().entry(code).or_default() += 1;
}

/// Waits until every node's mempool is empty, for at most [`MAX_DRAIN`].
async fn drain(nodes: &[NodeProcess]) {
    let deadline = Instant::now() + MAX_DRAIN;
    for node in nodes {
        while metric(&node.client, "bidchain_mempool_txs").await > 0 && Instant::now() < deadline {
            tokio::time::sleep(POOL_POLL).await;
        }
    }
}

/// Sends each node's transactions at `rate / validators` per second (open loop: a
/// submission does not wait for the previous answer), or as fast as admitted: about
/// [`UNPACED_WINDOW_TXS`] in flight, until the measurement ends.
async fn send_load(
    settings: &Settings,
    nodes: &[NodeProcess],
    load: Vec<Vec<SignedTransaction>>,
) -> Sent {
    let start = Instant::now();
    let per_node_rate = settings.rate as f64 / settings.validators as f64;
    let batch_ms = settings.batch_ms;
    let in_flight = (settings.rate == 0).then(|| {
        let until = start + Duration::from_secs(settings.warmup_seconds + settings.seconds);
        Arc::new(InFlight::new(until))
    });
    let clients: Vec<Client> = nodes.iter().map(|n| n.client.clone()).collect();
    let follower = in_flight.clone().map(|f| tokio::spawn(f.follow(clients)));
    let tasks: Vec<_> = load
        .into_iter()
        .enumerate()
        .map(|(node, txs)| {
            let client = nodes[node].client.clone();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                let pace = Pace {
                    start,
                    per_node_rate,
                    in_flight,
                };
                if batch_ms == 0 {
                    send_one_by_one(&client, node, txs, pace).await
                } else {
                    send_in_batches(&client, node, txs, pace, batch_ms).await
                }
            })
        })
        .collect();
    let mut out = Sent::default();
    for task in tasks {
        out.add(task.await.unwrap());
    }
    if let Some(follower) = follower {
        follower.abort();
        // A follower that died (a node stopped answering) froze the window: fail the run
        // rather than report what the senders could not send.
        if let Err(err) = follower.await
            && err.is_panic()
        {
            std::panic::resume_unwind(err.into_panic());
        }
    }
    out
}

/// When each of a node's transactions is due.
#[derive(Clone)]
struct Pace {
    start: Instant,
    /// 0: as fast as admitted, within `in_flight`'s window.
    per_node_rate: f64,
    in_flight: Option<Arc<InFlight>>,
}

impl Pace {
    fn due(&self, i: usize) -> Option<Instant> {
        (self.per_node_rate > 0.0)
            .then(|| self.start + Duration::from_secs_f64(i as f64 / self.per_node_rate))
    }

    /// How many transactions are due by `at` (all of them when unpaced: the window then
    /// limits them, in [`Pace::claim`]).
    fn due_by(&self, at: Instant) -> usize {
        match &self.in_flight {
            None => ((at - self.start).as_secs_f64() * self.per_node_rate) as usize,
            Some(_) => usize::MAX,
        }
    }

    /// Whether an unpaced sender is done: the measurement is over.
    fn over(&self, at: Instant) -> bool {
        self.in_flight.as_ref().is_some_and(|f| at >= f.until)
    }

    /// Of `want` transactions due, how many to send now: all when paced, else as many as
    /// the window has room for, which they then hold until [`Pace::answered`].
    fn claim(&self, want: usize) -> usize {
        self.in_flight.as_ref().map_or(want, |f| f.claim(want))
    }

    /// `n` claimed transactions were answered: admitted ones now count in the mempools.
    fn answered(&self, n: usize) {
        if let Some(in_flight) = &self.in_flight {
            in_flight.requested.fetch_sub(n as u64, Ordering::Relaxed);
        }
    }

    /// Waits until transaction `i` is due, or claims its place in the window; false when
    /// it is not to be sent.
    async fn wait_turn(&self, i: usize) -> bool {
        match (&self.in_flight, self.due(i)) {
            (Some(in_flight), _) => in_flight.wait_room().await,
            (None, Some(due)) => {
                tokio::time::sleep_until(due.into()).await;
                true
            }
            (None, None) => true,
        }
    }
}

/// What unpaced senders have in flight, over all nodes.
struct InFlight {
    /// In requests not yet answered.
    requested: AtomicU64,
    /// In the fullest node's mempool (admitted, neither committed nor dropped), as of the
    /// last poll. Counting the pools, not what was sent, keeps transactions a node drops
    /// (held for a nonce gap that never filled) from taking the window's room for good.
    pooled: AtomicU64,
    /// When sending stops: the end of the measurement.
    until: Instant,
}

impl InFlight {
    fn new(until: Instant) -> InFlight {
        InFlight {
            requested: AtomicU64::new(0),
            pooled: AtomicU64::new(0),
            until,
        }
    }

    /// Takes up to `want` places in the window, at once for all senders; returns how many.
    fn claim(&self, want: usize) -> usize {
        let pooled = self.pooled.load(Ordering::Relaxed);
        let mut taken = 0;
        let _ = self
            .requested
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |requested| {
                let room = UNPACED_WINDOW_TXS.saturating_sub(requested + pooled);
                taken = room.min(want as u64);
                Some(requested + taken)
            });
        taken as usize
    }

    /// Waits until one place is taken; false once the measurement is over.
    async fn wait_room(&self) -> bool {
        while Instant::now() < self.until {
            if self.claim(1) == 1 {
                return true;
            }
            tokio::time::sleep(POOL_POLL).await;
        }
        false
    }

    /// Keeps `pooled` up to date from the nodes `clients` talk to.
    async fn follow(self: Arc<Self>, clients: Vec<Client>) {
        loop {
            tokio::time::sleep(POOL_POLL).await;
            let mut fullest = 0;
            for client in &clients {
                fullest = fullest.max(metric(client, "bidchain_mempool_txs").await);
            }
            self.pooled.store(fullest, Ordering::Relaxed);
        }
    }
}

/// One `POST /txs` per transaction, as a bidder's own client sends.
async fn send_one_by_one(
    client: &Client,
    node: usize,
    txs: Vec<SignedTransaction>,
    pace: Pace,
) -> Sent {
    let gate = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_PER_NODE));
    let (refused, resent) = (Refusals::default(), Arc::new(AtomicU64::new(0)));
    let mut samples = Vec::new();
    let mut inflight = Vec::new();
    for (i, tx) in txs.into_iter().enumerate() {
        if !pace.wait_turn(i).await {
            break;
        }
        let permit = gate.clone().acquire_owned().await.unwrap();
        // From when it was due, as in batches: a wait at the gate counts.
        let sampled = sample(i, &tx, node, pace.due(i).unwrap_or_else(Instant::now));
        let admitted = sampled.as_ref().map(|s| s.admitted.clone());
        samples.extend(sampled);
        let (client, refused, resent) = (client.clone(), refused.clone(), resent.clone());
        let pace = pace.clone();
        inflight.push(tokio::spawn(async move {
            match send_until_not_busy(&resent, || client.submit(&tx)).await {
                Ok(_) => {
                    if let Some(at) = admitted {
                        let _ = at.set(Instant::now());
                    }
                }
                Err(err) => count_refusal(&refused, &err),
            }
            pace.answered(1);
            drop(permit);
        }));
    }
    let sent = inflight.len() as u64;
    finish(inflight, samples, &refused, &resent, sent).await
}

/// Waits for a node's requests still in flight and tallies what was sent.
async fn finish(
    inflight: Vec<tokio::task::JoinHandle<()>>,
    samples: Vec<Sample>,
    refused: &Refusals,
    resent: &AtomicU64,
    sent: u64,
) -> Sent {
    for task in inflight {
        task.await.unwrap();
    }
    let refused = refused.lock().unwrap().clone();
    Sent {
        samples,
        refused,
        busy_resent: resent.load(Ordering::Relaxed),
        sent,
    }
}

/// Every `batch_ms`, the transactions due since the last batch in one `POST /txs/batch`,
/// as a gateway forwarding many bidders' submissions sends. A sample's latency counts
/// from when its transaction was due, so the wait for the batch is included.
async fn send_in_batches(
    client: &Client,
    node: usize,
    txs: Vec<SignedTransaction>,
    pace: Pace,
    batch_ms: u64,
) -> Sent {
    let gate = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_PER_NODE));
    let (refused, resent) = (Refusals::default(), Arc::new(AtomicU64::new(0)));
    let mut samples = Vec::new();
    let mut inflight = Vec::new();
    let total = txs.len();
    let mut txs = txs.into_iter();
    let (mut next, mut tick) = (0, pace.start);
    while next < total {
        tick += Duration::from_millis(batch_ms);
        tokio::time::sleep_until(tick.into()).await;
        if pace.over(tick) {
            break;
        }
        let due = pace
            .due_by(tick)
            .min(total)
            .min(next + MAX_SUBMIT_BATCH_TXS);
        let end = next + pace.claim(due.saturating_sub(next));
        let batch: Vec<SignedTransaction> = txs.by_ref().take(end - next).collect();
        let first = samples.len();
        for (i, tx) in (next..end).zip(&batch) {
            samples.extend(sample(i, tx, node, pace.due(i).unwrap_or(tick)));
        }
        let admitted: Vec<_> = samples[first..]
            .iter()
            .map(|s| (s.hash, s.admitted.clone()))
            .collect();
        next = end;
        if batch.is_empty() {
            continue;
        }
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (client, refused, resent) = (client.clone(), refused.clone(), resent.clone());
        let pace = pace.clone();
        inflight.push(tokio::spawn(async move {
            let len = batch.len();
            let body = bidchain_runtime::codec::encode(&SubmitBatch::new(batch).unwrap());
            let answer =
                send_until_not_busy(&resent, || client.submit_batch_raw(body.clone())).await;
            match answer {
                Ok(answer) => {
                    let now = Instant::now();
                    for item in answer.results {
                        if let Some(err) = item.refused {
                            *refused.lock().unwrap().entry(err.code).or_default() += 1;
                        } else if let Some((_, at)) =
                            admitted.iter().find(|(hash, _)| *hash == item.tx_hash)
                        {
                            let _ = at.set(now);
                        }
                    }
                }
                Err(err) => {
                    for _ in 0..len {
                        count_refusal(&refused, &err);
                    }
                }
            }
            pace.answered(len);
            drop(permit);
        }));
    }
    finish(inflight, samples, &refused, &resent, next as u64).await
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// utime + stime of a process, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// What node `index` keeps for good: its database opened after it stopped, flushed and
/// compacted, counting the table files only (the write-ahead log is recycled).
fn kept_bytes(net: &Localnet, index: usize) -> u64 {
    let db = net.nodes[index].home.join("data").join("db");
    Storage::open(&db, &net.genesis).unwrap().compact().unwrap();
    std::fs::read_dir(&db)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

async fn committed_total(client: &Client) -> u64 {
    metric(client, "bidchain_txs_committed_total").await
}

/// Signatures each node has checked so far.
async fn signatures_checked(clients: &[Client]) -> Vec<u64> {
    let mut checked = Vec::with_capacity(clients.len());
    for client in clients {
        checked.push(metric(client, "bidchain_signatures_checked_total").await);
    }
    checked
}

/// Accounts, units and tenders the load needs, committed before it starts.
async fn set_up(net: &Localnet, client: &Client, bidders: &[Bidder], center: &mut Bidder) {
    let hub = net.key(0).unwrap();
    let chain = &net.genesis.chain_id;
    let tx = create_account_tx_on(chain, &hub, Nonce(0), &center.key, Role::Center);
    client.submit(&tx).await.unwrap();
    client
        .wait_included(&tx.hash(), Duration::from_secs(60))
        .await
        .unwrap();
    let mut txs = Vec::new();
    for b in bidders {
        txs.push(create_account_tx_on(
            chain,
            &center.key,
            Nonce(center.nonce),
            &b.key,
            Role::Bidder,
        ));
        center.nonce += 1;
    }
    for (i, b) in bidders.iter().enumerate() {
        let call = TenderCall::RegisterBidder {
            bidder: trading::account_key(&b.key.public()),
            unit: trading::unit_id(&format!("load-unit-{i}")),
        };
        txs.push(
            trading::call_tx(
                chain,
                &center.key,
                Nonce(center.nonce),
                names::TENDER,
                &call,
            )
            .unwrap(),
        );
        center.nonce += 1;
    }
    let now = Timestamp::from_system(SystemTime::now()).as_millis();
    let label = |t: &str| Label::new(t).unwrap();
    for t in 0..tenders(bidders.len()) {
        let params = TenderParams {
            id: tender_id(t),
            document_hash: trading::sha256(b"load tender"),
            category: label("construction"),
            region: label("nanjing"),
            tenderer_unit: trading::unit_id("load-tenderer"),
            deadline_ms: now + 6 * 3_600_000,
            opening_ms: now + 6 * 3_600_000,
            decryption_window_ms: 3_600_000,
            min_bidders: 3,
            expert_count: 5,
            alternates: 2,
            expert_categories: vec![label("construction")],
            remote: false,
        };
        txs.push(
            trading::call_tx(
                chain,
                &center.key,
                Nonce(center.nonce),
                names::TENDER,
                &TenderCall::Create(params),
            )
            .unwrap(),
        );
        center.nonce += 1;
    }
    // The set-up outruns the chain too: resent after `busy` like the load.
    let resent = AtomicU64::new(0);
    for tx in &txs {
        send_until_not_busy(&resent, || client.submit(tx))
            .await
            .unwrap();
    }
    let last = txs.last().unwrap();
    client
        .wait_included(&last.hash(), Duration::from_secs(120))
        .await
        .unwrap();
}

async fn run(settings: Settings) -> serde_json::Value {
    let temp = tempfile::tempdir().unwrap();
    // LOAD_KEEP=1 keeps the network's directory (each node's node.log) for a post-mortem.
    let (dir, _guard) = match std::env::var_os("LOAD_KEEP") {
        Some(_) => {
            let kept = temp.keep();
            println!("keeping {}", kept.display());
            (kept, None)
        }
        None => (temp.path().to_path_buf(), Some(temp)),
    };
    // One observer, started only after the load, to time its catch-up.
    let mut spec = LocalnetSpec::new(settings.validators, 1);
    spec.base_port = 0;
    spec.chain_id = "bidchain-load".to_owned();
    spec.consensus = ConsensusParams {
        block_interval_ms: 100,
        max_block_txs: settings.block_txs,
        ..ConsensusParams::default()
    };
    spec.mempool = MempoolConfig {
        max_wait_ms: settings.max_wait_ms,
        ..MempoolConfig::default()
    };
    let mut net = Localnet::create_or_load(&dir.join("net"), &spec).unwrap();
    let bin = locate_bidchain().unwrap();
    let mut nodes = Vec::new();
    for index in 0..settings.validators {
        nodes.push(net.start_node(&bin, index).await.unwrap());
    }
    let client = nodes[0].client.clone();
    client
        .wait_height(Height(1), Duration::from_secs(60))
        .await
        .unwrap();

    let mut center = Bidder {
        key: Keypair::generate(),
        nonce: 0,
        submitted: false,
    };
    let mut bidders: Vec<Bidder> = (0..settings.bidders)
        .map(|_| Bidder {
            key: Keypair::generate(),
            nonce: 0,
            submitted: false,
        })
        .collect();
    set_up(&net, &client, &bidders, &mut center).await;
    let signing = Instant::now();
    // The hub's nonce 0 opened the center.
    let mut openers: Vec<Bidder> = (0..settings.validators)
        .map(|i| Bidder {
            key: net.key(i).unwrap(),
            nonce: u64::from(i == 0),
            submitted: false,
        })
        .collect();
    let load = sign_load(&settings, &net.genesis.chain_id, &mut bidders, &mut openers);
    println!(
        "signed {} txs in {:.1} s",
        settings.total_txs(),
        signing.elapsed().as_secs_f64()
    );

    let seen: Seen = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = tokio::spawn(watch_heights(client.clone(), seen.clone(), stop.clone()));
    let pids: Vec<u32> = nodes.iter().map(NodeProcess::pid).collect();
    let window = {
        // The nodes, then this process (the load generator, which shares the cores).
        let watched: Vec<u32> = pids.iter().copied().chain([std::process::id()]).collect();
        let clients: Vec<Client> = nodes.iter().map(|n| n.client.clone()).collect();
        let (pids, warmup, seconds) = (watched, settings.warmup_seconds, settings.seconds);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(warmup)).await;
            let (c0, sigs0, cpu0, t0) = (
                committed_total(&clients[0]).await,
                signatures_checked(&clients).await,
                pids.iter().map(|p| cpu_ticks(*p)).collect::<Vec<_>>(),
                Instant::now(),
            );
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let (c1, sigs1, cpu1, t1) = (
                committed_total(&clients[0]).await,
                signatures_checked(&clients).await,
                pids.iter().map(|p| cpu_ticks(*p)).collect::<Vec<_>>(),
                Instant::now(),
            );
            let secs = (t1 - t0).as_secs_f64();
            let cpu: Vec<f64> = cpu0
                .iter()
                .zip(&cpu1)
                .map(|(a, b)| (b - a) as f64 / secs)
                .collect();
            let committed = c1.saturating_sub(c0);
            let sigs_per_tx: Vec<f64> = sigs0
                .iter()
                .zip(&sigs1)
                .map(|(a, b)| b.saturating_sub(*a) as f64 / committed.max(1) as f64)
                .collect();
            (committed as f64 / secs, cpu, sigs_per_tx)
        })
    };
    let sent = send_load(&settings, &nodes, load).await;
    let (committed_per_s, mut cpu_percent, sigs_per_tx) = window.await.unwrap();
    let generator_cpu_percent = cpu_percent.pop().unwrap_or(0.0);
    // Let the tail commit, and the height watcher see its last block, then measure
    // latency of the samples.
    if settings.rate == 0 {
        drain(&nodes).await;
    }
    tokio::time::sleep(TAIL).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let mut latencies_ms = Vec::new();
    let mut admitted_latencies_ms = Vec::new();
    let mut uncommitted = 0u64;
    // Included but refused by a rule, by code: the load is built so that there are none.
    let mut rejected = BTreeMap::<String, u64>::new();
    let ms_between =
        |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    for Sample {
        hash,
        node,
        due,
        admitted,
    } in &sent.samples
    {
        let answer = nodes[*node].client.tx(hash).await.ok();
        if let Some(TxOutcome::Rejected { code, .. }) =
            answer.as_ref().and_then(|a| a.result.as_ref())
        {
            *rejected.entry(code.as_str().to_owned()).or_default() += 1;
        }
        let height = answer.and_then(|a| a.height);
        let committed = height.and_then(|h| seen.range(h.0..).next().map(|(_, t)| *t));
        match committed {
            Some(at) => {
                latencies_ms.push(ms_between(*due, at));
                admitted_latencies_ms.extend(admitted.get().map(|from| ms_between(*from, at)));
            }
            None => uncommitted += 1,
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    admitted_latencies_ms.sort_by(f64::total_cmp);
    let (admitted_p50, admitted_p99) = (
        percentile(&admitted_latencies_ms, 50.0),
        percentile(&admitted_latencies_ms, 99.0),
    );
    let total_committed = committed_total(&client).await;
    let disk: Vec<u64> = net
        .nodes
        .iter()
        .take(settings.validators)
        .map(|n| dir_bytes(&n.home.join("data")))
        .collect();
    let bytes_per_tx =
        disk.iter().sum::<u64>() as f64 / disk.len() as f64 / total_committed.max(1) as f64;
    let peak_mib: Vec<u64> = pids.iter().map(|p| peak_rss_mib(*p)).collect();
    let (p50, p90, p99) = (
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 90.0),
        percentile(&latencies_ms, 99.0),
    );
    println!(
        "load {} validators, {:?}, offered {}: committed {committed_per_s:.0} tx/s over {} s; \
         latency p50 {p50:.0} ms p90 {p90:.0} ms p99 {p99:.0} ms ({} samples, {uncommitted} not committed, rejected by the rules {rejected:?}); \
         admitted→commit p50 {admitted_p50:.0} ms p99 {admitted_p99:.0} ms; \
         CPU per node {:?} % of a core (load generator {generator_cpu_percent:.0} %); signature checks per committed tx {:?}; peak RSS {:?} MiB; {bytes_per_tx:.0} bytes in the data dir per tx (write-ahead log included); refused {:?}, resent after `busy` {}",
        settings.validators,
        settings.mix,
        settings.offered(),
        settings.seconds,
        latencies_ms.len(),
        cpu_percent
            .iter()
            .map(|c| c.round() as u64)
            .collect::<Vec<_>>(),
        sigs_per_tx
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>(),
        peak_mib,
        sent.refused,
        sent.busy_resent,
    );
    let catch_up = observer_catch_up(&mut net, &bin, settings.validators, &client).await;
    println!(
        "observer: {} txs in {} blocks from genesis in {:.1} s: {:.0} tx/s",
        catch_up.txs,
        catch_up.height.0,
        catch_up.seconds,
        catch_up.txs_per_s()
    );
    for node in &mut nodes {
        node.stop().await.unwrap();
    }
    let kept = kept_bytes(&net, 0);
    let kept_per_tx = kept as f64 / total_committed.max(1) as f64;
    println!(
        "validator 0 keeps {kept} bytes after compaction: {kept_per_tx:.0} bytes per committed tx"
    );
    serde_json::json!({
        "validators": settings.validators,
        "mix": format!("{:?}", settings.mix).to_lowercase(),
        "batch_ms": settings.batch_ms,
        "max_block_txs": settings.block_txs,
        "max_wait_ms": settings.max_wait_ms,
        "offered_txs_per_s": settings.rate,
        "unpaced_window_txs": (settings.rate == 0).then_some(UNPACED_WINDOW_TXS),
        "measured_seconds": settings.seconds,
        "warmup_seconds": settings.warmup_seconds,
        "sent": sent.sent,
        "refused": sent.refused,
        "busy_resent": sent.busy_resent,
        "committed_txs_per_s": committed_per_s,
        "commit_latency_ms_p50": p50,
        "commit_latency_ms_p90": p90,
        "commit_latency_ms_p99": p99,
        "admitted_to_commit_ms_p50": admitted_p50,
        "admitted_to_commit_ms_p99": admitted_p99,
        "latency_samples": latencies_ms.len(),
        "samples_not_committed": uncommitted,
        "samples_rejected": rejected,
        "cpu_percent_of_core_per_node": cpu_percent,
        "cpu_percent_of_core_load_generator": generator_cpu_percent,
        "signature_checks_per_committed_tx_per_node": sigs_per_tx,
        "peak_rss_mib_per_node": peak_mib,
        "disk_bytes_per_node": disk,
        "disk_bytes_per_committed_tx": bytes_per_tx,
        "kept_bytes_node0_after_compaction": kept,
        "kept_bytes_per_committed_tx": kept_per_tx,
        "committed_txs_total": total_committed,
        "observer_catch_up_height": catch_up.height.0,
        "observer_catch_up_txs": catch_up.txs,
        "observer_catch_up_seconds": catch_up.seconds,
        "observer_catch_up_txs_per_s": catch_up.txs_per_s(),
    })
}

struct CatchUp {
    height: Height,
    txs: u64,
    seconds: f64,
}

impl CatchUp {
    fn txs_per_s(&self) -> f64 {
        self.txs as f64 / self.seconds.max(f64::EPSILON)
    }
}

/// Starts the observer (node `validators`) on the chain the load left and times its sync
/// from genesis to the validators' tip: it fetches every block, checks its certificate
/// and re-executes it. The clock starts when its API answers (the process is up).
async fn observer_catch_up(
    net: &mut Localnet,
    bin: &Path,
    validators: usize,
    client: &Client,
) -> CatchUp {
    let height = client.status().await.unwrap().height;
    let mut observer = net.start_node(bin, validators).await.unwrap();
    let start = Instant::now();
    observer
        .client
        .wait_height(height, Duration::from_secs(900))
        .await
        .unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let txs = committed_total(&observer.client).await;
    observer.stop().await.unwrap();
    CatchUp {
        height,
        txs,
        seconds,
    }
}

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(run(settings));
    let out = bidchain_benches::write_result("load", result).unwrap();
    println!("wrote {out}");
}
