//! The mempool: signed transactions admitted but not yet committed. Bounded in count and
//! bytes; admission checks chain id, signature, sender and nonce so that what it hands the
//! proposer is (as of admission) includable, and says exactly why it refuses.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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
    /// Each sender's pending transactions by nonce: a run without gaps from its
    /// committed nonce.
    by_sender: HashMap<AccountId, BTreeMap<Nonce, TxHash>>,
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
            by_sender: HashMap::new(),
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
        let pending = self.by_sender.get(sender)?;
        pending.last_key_value().map(|(nonce, _)| nonce.next())
    }

    /// Whether a transaction of `encoded_len` bytes fits: checked before its signature, so
    /// that a full mempool refuses cheaply.
    pub fn check_room(&self, encoded_len: usize) -> Result<(), AdmitError> {
        if self.by_hash.len() >= self.config.max_txs
            || self.bytes + encoded_len > self.config.max_bytes
        {
            return Err(AdmitError::Full {
                txs: self.by_hash.len(),
                bytes: self.bytes,
            });
        }
        Ok(())
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
        self.check_room(encoded_len)?;
        let sender = tx.tx.sender_id();
        let overlay = Overlay::new(state);
        let account = execute::check_envelope(&overlay, &self.chain_id, &tx, Some(tx.tx.nonce))
            .map_err(AdmitError::Invalid)?;
        let expected = self.next_nonce(&sender).unwrap_or(account.nonce);
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
        self.insert(hash, tx, encoded_len);
        Ok(hash)
    }

    fn insert(&mut self, hash: TxHash, tx: SignedTransaction, bytes: usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, hash);
        self.bytes += bytes;
        let pending = self.by_sender.entry(tx.tx.sender_id()).or_default();
        pending.insert(tx.tx.nonce, hash);
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

    /// After a commit of `committed` (hash and sender of each transaction in the block):
    /// drops them, then re-checks the pending runs of their senders only (no other
    /// sender's committed nonce moved), dropping what the new state made stale and
    /// whatever follows a gap.
    pub fn update_after_commit<V: StateView + ?Sized>(
        &mut self,
        state: &V,
        committed: &[(TxHash, AccountId)],
    ) {
        let senders: BTreeSet<AccountId> = committed.iter().map(|(_, sender)| *sender).collect();
        for (hash, _) in committed {
            self.remove(hash);
        }
        let overlay = Overlay::new(state);
        for sender in senders {
            let Some(pending) = self.by_sender.get(&sender) else {
                continue;
            };
            let mut expected = overlay.account(sender).ok().flatten().map(|a| a.nonce);
            let mut stale = Vec::new();
            for (nonce, hash) in pending {
                if expected == Some(*nonce) {
                    expected = Some(nonce.next());
                } else {
                    stale.push(*hash);
                }
            }
            for hash in stale {
                self.remove(&hash);
            }
        }
    }

    fn remove(&mut self, hash: &TxHash) {
        let Some(entry) = self.by_hash.remove(hash) else {
            return;
        };
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        let sender = entry.tx.tx.sender_id();
        if let Some(pending) = self.by_sender.get_mut(&sender) {
            pending.remove(&entry.tx.tx.nonce);
            if pending.is_empty() {
                self.by_sender.remove(&sender);
            }
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
        let sender = first.tx.sender_id();
        pool.update_after_commit(&state, &[(first.hash(), sender)]);
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.bytes, 0);
        assert_eq!(pool.next_nonce(&sender), None);
    }

    #[test]
    fn a_commit_leaves_other_senders_and_the_run_after_it() {
        let genesis = genesis_for(&[1], &[2]);
        let mut state = genesis.initial_state().unwrap();
        let mut pool = Mempool::new(MempoolConfig::default(), genesis.chain_id.clone());
        let (hub, bidder) = (
            Keypair::from_seed_for_tests(1),
            Keypair::from_seed_for_tests(2),
        );
        let hub_txs: Vec<_> = (0..3).map(|n| tx(&hub, n)).collect();
        for t in &hub_txs {
            pool.admit_verified(&state, t.clone(), 100).unwrap();
        }
        pool.admit_verified(&state, tx(&bidder, 0), 100).unwrap();
        // A block with the hub's first transaction: the state's hub nonce moves to 1.
        let hub_id = AccountId::of(&hub.public());
        let mut overlay = Overlay::new(&state);
        let mut account = overlay.account(hub_id).unwrap().unwrap();
        account.nonce = Nonce(1);
        overlay.put(bidchain_runtime::state::StateKey::Account(hub_id), &account);
        for (key, value) in overlay.into_changes() {
            state.insert(key, value.unwrap());
        }
        pool.update_after_commit(&state, &[(hub_txs[0].hash(), hub_id)]);
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.next_nonce(&hub_id), Some(Nonce(3)));
        let bidder_id = AccountId::of(&bidder.public());
        assert_eq!(pool.next_nonce(&bidder_id), Some(Nonce(1)));
        let reaped: Vec<_> = pool.reap(10, 1 << 20).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(reaped, vec![Nonce(1), Nonce(2), Nonce(0)]);
    }
}
