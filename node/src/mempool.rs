//! The mempool: signed transactions admitted but not yet committed. Bounded in count and
//! bytes; admission checks chain id, signature, sender and nonce so that what it hands the
//! proposer is (as of admission) includable, and says exactly why it refuses.

use std::collections::{BTreeMap, HashMap};

use bidchain_runtime::execute::{self, TxInvalid};
use bidchain_runtime::ids::{AccountId, ChainId, Nonce};
use bidchain_runtime::state::{Overlay, StateView};
use bidchain_runtime::tx::{SignedTransaction, TxHash};

/// Default bound on the transactions held.
pub const DEFAULT_MAX_TXS: usize = 50_000;
/// Default bound on the encoded bytes held.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: DEFAULT_MAX_TXS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("transaction {0} is already pending")]
    Duplicate(TxHash),
    #[error("mempool is full ({txs} transactions, {bytes} bytes); retry later")]
    Full { txs: usize, bytes: usize },
    #[error("nonce {got} is already used; the sender's next nonce is {expected}")]
    NonceTooLow { expected: Nonce, got: Nonce },
    #[error("nonce {got} leaves a gap; the sender's next nonce is {expected}")]
    NonceGap { expected: Nonce, got: Nonce },
    #[error(transparent)]
    Invalid(TxInvalid),
}

impl AdmitError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::Duplicate(_) => "duplicate",
            AdmitError::Full { .. } => "mempool_full",
            AdmitError::NonceTooLow { .. } => "nonce_too_low",
            AdmitError::NonceGap { .. } => "nonce_gap",
            AdmitError::Invalid(TxInvalid::WrongChain { .. }) => "wrong_chain",
            AdmitError::Invalid(TxInvalid::BadSignature) => "bad_signature",
            AdmitError::Invalid(TxInvalid::UnknownSender(_)) => "unknown_sender",
            AdmitError::Invalid(TxInvalid::NonceMismatch { .. }) => "nonce_mismatch",
            AdmitError::Invalid(TxInvalid::State(_)) => "state_unavailable",
            AdmitError::Invalid(TxInvalid::BlockFuelSpent { .. }) => "block_fuel_spent",
        }
    }
}

#[derive(Debug)]
struct Entry {
    tx: SignedTransaction,
    bytes: usize,
    seq: u64,
}

/// Pending transactions in arrival order. Per sender, nonces are admitted only in sequence,
/// so arrival order is also nonce order and a reaped prefix is always includable.
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    chain_id: ChainId,
    by_hash: HashMap<TxHash, Entry>,
    order: BTreeMap<u64, TxHash>,
    next_nonce: HashMap<AccountId, Nonce>,
    next_seq: u64,
    bytes: usize,
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: ChainId) -> Mempool {
        Mempool {
            config,
            chain_id,
            by_hash: HashMap::new(),
            order: BTreeMap::new(),
            next_nonce: HashMap::new(),
            next_seq: 0,
            bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// The nonce the sender's next transaction must carry, counting pending ones.
    pub fn next_nonce(&self, sender: &AccountId) -> Option<Nonce> {
        self.next_nonce.get(sender).copied()
    }

    /// Admits a transaction whose signature the caller has already verified (signature
    /// checks are the expensive part and run outside the mempool lock).
    pub fn admit_verified<V: StateView + ?Sized>(
        &mut self,
        state: &V,
        tx: SignedTransaction,
        encoded_len: usize,
    ) -> Result<TxHash, AdmitError> {
        let hash = tx.hash();
        if self.by_hash.contains_key(&hash) {
            return Err(AdmitError::Duplicate(hash));
        }
        if self.by_hash.len() >= self.config.max_txs
            || self.bytes + encoded_len > self.config.max_bytes
        {
            return Err(AdmitError::Full {
                txs: self.by_hash.len(),
                bytes: self.bytes,
            });
        }
        let sender = tx.tx.sender_id();
        let overlay = Overlay::new(state);
        let account = execute::check_envelope(&overlay, &self.chain_id, &tx, Some(tx.tx.nonce))
            .map_err(AdmitError::Invalid)?;
        let expected = self
            .next_nonce
            .get(&sender)
            .copied()
            .unwrap_or(account.nonce);
        if tx.tx.nonce < expected {
            return Err(AdmitError::NonceTooLow {
                expected,
                got: tx.tx.nonce,
            });
        }
        if tx.tx.nonce > expected {
            return Err(AdmitError::NonceGap {
                expected,
                got: tx.tx.nonce,
            });
        }
        self.next_nonce.insert(sender, expected.next());
        self.insert(hash, tx, encoded_len);
        Ok(hash)
    }

    fn insert(&mut self, hash: TxHash, tx: SignedTransaction, bytes: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        self.bytes += bytes;
        self.by_hash.insert(hash, Entry { tx, bytes, seq });
    }

    /// The oldest pending transactions, up to `max_txs` and `max_bytes` in total.
    pub fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for hash in self.order.values() {
            let Some(entry) = self.by_hash.get(hash) else {
                continue;
            };
            if out.len() >= max_txs || bytes + entry.bytes > max_bytes {
                break;
            }
            bytes += entry.bytes;
            out.push(entry.tx.clone());
        }
        out
    }

    /// After a commit: drops the committed transactions and any whose nonce the new state
    /// has made stale, then recomputes each sender's next nonce.
    pub fn update_after_commit<V: StateView + ?Sized>(&mut self, state: &V, committed: &[TxHash]) {
        for hash in committed {
            self.remove(hash);
        }
        let overlay = Overlay::new(state);
        let mut expected: HashMap<AccountId, Nonce> = HashMap::new();
        let mut stale = Vec::new();
        for (seq, hash) in &self.order {
            let Some(entry) = self.by_hash.get(hash) else {
                continue;
            };
            let sender = entry.tx.tx.sender_id();
            let next = match expected.get(&sender) {
                Some(nonce) => Some(*nonce),
                None => overlay.account(sender).ok().flatten().map(|a| a.nonce),
            };
            match next {
                Some(nonce) if nonce == entry.tx.tx.nonce => {
                    expected.insert(sender, nonce.next());
                }
                _ => stale.push(*seq),
            }
        }
        for seq in stale {
            if let Some(hash) = self.order.get(&seq).copied() {
                self.remove(&hash);
            }
        }
        self.next_nonce = expected;
    }

    fn remove(&mut self, hash: &TxHash) {
        if let Some(entry) = self.by_hash.remove(hash) {
            self.order.remove(&entry.seq);
            self.bytes -= entry.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{create_account_tx, genesis_for};
    use bidchain_runtime::crypto::Keypair;
    use bidchain_runtime::tx::Role;

    fn setup() -> (
        Mempool,
        std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        Keypair,
    ) {
        let genesis = genesis_for(&[1], &[]);
        let state = genesis.initial_state().unwrap();
        let pool = Mempool::new(
            MempoolConfig {
                max_txs: 3,
                max_bytes: 1 << 20,
            },
            genesis.chain_id,
        );
        (pool, state, Keypair::from_seed_for_tests(1))
    }

    fn tx(key: &Keypair, nonce: u64) -> SignedTransaction {
        create_account_tx(
            key,
            nonce,
            &Keypair::from_seed_for_tests(1000 + nonce),
            Role::Bidder,
        )
    }

    #[test]
    fn admits_in_nonce_order_and_says_why_not() {
        let (mut pool, state, hub) = setup();
        pool.admit_verified(&state, tx(&hub, 0), 100).unwrap();
        assert!(matches!(
            pool.admit_verified(&state, tx(&hub, 0), 100),
            Err(AdmitError::Duplicate(_))
        ));
        assert!(matches!(
            pool.admit_verified(&state, tx(&hub, 2), 100),
            Err(AdmitError::NonceGap {
                expected: Nonce(1),
                ..
            })
        ));
        pool.admit_verified(&state, tx(&hub, 1), 100).unwrap();
        pool.admit_verified(&state, tx(&hub, 2), 100).unwrap();
        assert!(matches!(
            pool.admit_verified(&state, tx(&hub, 3), 100),
            Err(AdmitError::Full { .. })
        ));
        let stranger = Keypair::from_seed_for_tests(77);
        let err = Mempool::new(MempoolConfig::default(), genesis_for(&[1], &[]).chain_id)
            .admit_verified(&state, tx(&stranger, 0), 100)
            .unwrap_err();
        assert_eq!(err.code(), "unknown_sender");
        let reaped: Vec<_> = pool.reap(10, 1 << 20).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(reaped, vec![Nonce(0), Nonce(1), Nonce(2)]);
        assert_eq!(pool.reap(2, 1 << 20).len(), 2);
        assert_eq!(pool.reap(10, 250).len(), 2);
    }

    #[test]
    fn commit_removes_included_and_stale() {
        let (mut pool, state, hub) = setup();
        let first = tx(&hub, 0);
        pool.admit_verified(&state, first.clone(), 100).unwrap();
        pool.admit_verified(&state, tx(&hub, 1), 100).unwrap();
        // Nothing committed yet and the state still says nonce 0: both stay.
        pool.update_after_commit(&state, &[]);
        assert_eq!(pool.len(), 2);
        // Committing the first leaves the second, whose nonce is now next... but this
        // state was not advanced, so the second is stale relative to it and is dropped.
        pool.update_after_commit(&state, &[first.hash()]);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.bytes, 0);
    }
}
