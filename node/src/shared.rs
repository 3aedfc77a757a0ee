//! State shared by the node's tasks: the chain, the mempool and the metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bidchain_runtime::block::Block;
use bidchain_runtime::tx::TxHash;

use crate::chain::Chain;
use crate::mempool::Mempool;

#[derive(Debug)]
pub struct Shared {
    pub chain: Chain,
    pub node_name: String,
    mempool: Mutex<Mempool>,
    pub metrics: Metrics,
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub txs_admitted: AtomicU64,
    pub txs_refused: AtomicU64,
    pub txs_committed: AtomicU64,
    pub blocks_committed: AtomicU64,
}

impl Shared {
    pub fn new(chain: Chain, mempool: Mempool, node_name: String) -> Shared {
        Shared {
            chain,
            node_name,
            mempool: Mutex::new(mempool),
            metrics: Metrics::default(),
        }
    }

    /// The mempool. A panic while holding the lock cannot leave it half-updated in a way
    /// that matters (the next commit rebuilds its nonce view), so a poisoned lock is used.
    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn after_commit(&self, block: &Block, tx_hashes: &[TxHash]) {
        self.mempool()
            .update_after_commit(self.chain.storage(), tx_hashes);
        self.metrics
            .blocks_committed
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .txs_committed
            .fetch_add(tx_hashes.len() as u64, Ordering::Relaxed);
        tracing::info!(
            height = block.header.height.0,
            txs = tx_hashes.len(),
            block_id = %block.id(),
            time = %block.header.time,
            "committed block"
        );
    }
}
