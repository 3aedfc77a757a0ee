//! State shared by the node's tasks: the chain, the mempool and the metrics.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use bidchain_runtime::execute::TxInvalid;
use bidchain_runtime::tx::{SignedTransaction, TxHash};

use crate::chain::{Chain, Proposal};
use crate::mempool::{Admissible, AdmitError, Mempool};

/// Transactions admitted from clients and not yet gossiped to the other validators; past
/// this, a transaction stays in this node's mempool only (it is still proposed from here).
pub const MAX_OUTBOUND_TXS: usize = 10_000;

/// Where a transaction came from: a client's is passed on to the other validators, a
/// peer's is not (every validator hears every broadcast already).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxSource {
    Client,
    Peer,
}

#[derive(Debug)]
pub struct Shared {
    pub chain: Chain,
    pub node_name: String,
    /// A non-voting observer, not a validator.
    pub observer: bool,
    mempool: Mutex<Mempool>,
    /// With their encoded lengths, which the relay's batches are bounded by.
    outbound_txs: Mutex<VecDeque<(SignedTransaction, usize)>>,
    pub metrics: Metrics,
    /// Proof bundles being built at once (each reads a block's receipts on a blocking
    /// thread): at most [`MAX_CONCURRENT_PROOFS`].
    pub proof_slots: tokio::sync::Semaphore,
    /// Clients' batch submissions being admitted at once: at most
    /// [`MAX_CONCURRENT_BATCHES`].
    pub batch_slots: Arc<tokio::sync::Semaphore>,
    /// Clients' batch submissions admitted or waiting to be: at most
    /// [`MAX_PENDING_BATCHES`].
    pub batch_pending: Arc<tokio::sync::Semaphore>,
}

/// Most proof bundles built at once; more requests wait their turn.
pub const MAX_CONCURRENT_PROOFS: usize = 4;

/// Most client batch submissions admitted at once (each up to 1,024 signature checks on
/// a blocking thread); more wait their turn.
pub const MAX_CONCURRENT_BATCHES: usize = 2;

/// Most client batch submissions admitted or waiting (each holding a body of up to
/// 1 MiB); more are refused as `busy`. A gateway sending a batch every 20 ms waits out
/// a slow admission instead of being refused.
pub const MAX_PENDING_BATCHES: usize = 16;

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub txs_admitted: AtomicU64,
    pub txs_refused: AtomicU64,
    pub txs_committed: AtomicU64,
    pub blocks_committed: AtomicU64,
    /// Transaction signatures this node checked, on admission and in blocks it had not
    /// admitted from: more than one per committed transaction is work done twice.
    pub signatures_checked: AtomicU64,
    /// Peers connected now (a gauge).
    pub peers: AtomicU64,
}

impl Shared {
    pub fn new(chain: Chain, mempool: Mempool, node_name: String, observer: bool) -> Shared {
        Shared {
            chain,
            node_name,
            observer,
            mempool: Mutex::new(mempool),
            outbound_txs: Mutex::new(VecDeque::new()),
            metrics: Metrics::default(),
            proof_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_PROOFS),
            batch_slots: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_BATCHES)),
            batch_pending: Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_BATCHES)),
        }
    }

    /// The mempool. A panic while holding the lock would be a bug in the mempool; the node
    /// goes on with the poisoned lock rather than stop taking transactions (a restart
    /// starts the mempool empty).
    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Which of `txs` (a block's) this node checked the signature of already: the mempool
    /// holds only transactions whose signatures held on admission. Every caller checks
    /// the others, so those checks are counted here.
    pub fn signatures_checked(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        // Hashed before the lock is taken, and looked up under one lock for the block:
        // admission takes it for every transaction, and the consensus thread, waiting on it
        // once per transaction, waited behind admission threads the scheduler had paused.
        let hashes: Vec<TxHash> = txs.iter().map(SignedTransaction::hash).collect();
        let vouched: Vec<bool> = {
            let mempool = self.mempool();
            hashes.iter().map(|hash| mempool.contains(hash)).collect()
        };
        self.count_signature_checks(vouched.iter().filter(|v| !**v).count());
        vouched
    }

    fn count_signature_checks(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.metrics
            .signatures_checked
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Admits a transaction whose signature the caller has verified.
    pub fn admit(&self, tx: Admissible, source: TxSource) -> Result<TxHash, AdmitError> {
        let gossip = (source == TxSource::Client).then(|| (tx.tx.clone(), tx.encoded_len));
        let hash = self.mempool().admit_verified(
            &self.chain.storage().without_filling(),
            tx,
            Instant::now(),
        )?;
        self.metrics.txs_admitted.fetch_add(1, Ordering::Relaxed);
        if let Some(relayed) = gossip {
            let mut queue = self
                .outbound_txs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if queue.len() < MAX_OUTBOUND_TXS {
                queue.push_back(relayed);
            }
        }
        Ok(hash)
    }

    /// Admits a batch of transactions (a peer's relay, or a client's batch submission):
    /// one batch signature check (one by one only if the batch fails), then each admitted
    /// or refused on its own. One outcome per transaction, in order.
    pub fn admit_batch(
        &self,
        txs: Vec<SignedTransaction>,
        source: TxSource,
    ) -> Vec<(TxHash, Result<(), AdmitError>)> {
        let all_good = bidchain_runtime::execute::verify_signatures(&txs, &[]).is_ok();
        self.count_signature_checks(txs.len());
        txs.into_iter()
            .map(|tx| {
                let tx = Admissible::new(tx);
                let hash = tx.hash;
                let signed = all_good || {
                    self.count_signature_checks(1);
                    tx.tx.verify_signature().is_ok()
                };
                let outcome = if signed {
                    self.admit(tx, source).map(|_| ())
                } else {
                    Err(AdmitError::Invalid(TxInvalid::BadSignature))
                };
                (hash, outcome)
            })
            .collect()
    }

    /// [`Shared::admit_batch`] for a peer's relay: what is refused is only traced.
    pub fn admit_peer_batch(&self, txs: Vec<SignedTransaction>) {
        for (tx_hash, outcome) in self.admit_batch(txs, TxSource::Peer) {
            if let Err(err) = outcome {
                tracing::trace!(%tx_hash, %err, "peer transaction not admitted");
            }
        }
    }

    /// Takes up to `max` transactions waiting to be gossiped, with their encoded lengths.
    pub fn take_outbound_txs(&self, max: usize) -> Vec<(SignedTransaction, usize)> {
        let mut queue = self
            .outbound_txs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = queue.len().min(max);
        queue.drain(..n).collect()
    }

    pub fn after_commit(&self, proposal: &Proposal) {
        let block = &proposal.block;
        let receipts = &proposal.executed.receipts;
        let committed: Vec<_> = block
            .txs
            .iter()
            .zip(receipts)
            .map(|(tx, receipt)| (receipt.tx_hash, tx.tx.sender_id()))
            .collect();
        self.mempool()
            .update_after_commit(self.chain.storage(), &committed, Instant::now());
        self.metrics
            .blocks_committed
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .txs_committed
            .fetch_add(receipts.len() as u64, Ordering::Relaxed);
        tracing::info!(
            height = block.header.height.0,
            txs = receipts.len(),
            block_id = %block.id(),
            time = %block.header.time,
            "committed block"
        );
    }
}
