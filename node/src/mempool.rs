//! The mempool: signed transactions admitted but not yet committed. Bounded in count and
//! bytes; admission checks chain id, signature, sender and nonce, and says exactly why it
//! refuses. A transaction up to [`MAX_NONCE_AHEAD`] past its sender's next nonce is held
//! until the ones before it arrive (a client's concurrent requests can arrive out of
//! order); only the gap-free run from the committed nonce is handed to the proposer.
//!
//! With `max_wait_ms` set, clients are also refused (`busy`) while the queue stands: the
//! first includable transaction in line has waited here longer than that, so more
//! arrives than the chain commits. What is admitted then waits less behind the backlog
//! (at the median; a transaction held on its sender's gap still waits for the gap), and
//! a bidder near a deadline learns at once that it must retry. A burst the chain drains
//! in time is not refused. The caller passes the time in.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use bidchain_runtime::execute::{self, TxInvalid};
use bidchain_runtime::ids::{AccountId, ChainId, Nonce};
use bidchain_runtime::state::{Overlay, StateView};
use bidchain_runtime::tx::{MAX_TX_BYTES, SignedTransaction, TxHash};

/// A transaction on its way into the mempool, with its hash and encoded length worked
/// out once by the caller, outside the mempool lock (hashing under it made every
/// admission, and the consensus thread's lookups, wait on a second encoding). Built only
/// by [`Admissible::new`] outside this crate, so the hash is the transaction's.
#[derive(Clone, Debug)]
pub struct Admissible {
    pub(crate) tx: SignedTransaction,
    pub(crate) hash: TxHash,
    pub(crate) encoded_len: usize,
}

impl Admissible {
    pub fn new(tx: SignedTransaction) -> Admissible {
        let (bytes, hash) = tx.encoded_with_hash();
        Admissible {
            tx,
            hash,
            encoded_len: bytes.len(),
        }
    }
}

/// Default bound on the transactions held.
pub const DEFAULT_MAX_TXS: usize = 50_000;
/// Default bound on the encoded bytes held.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default bound on how long the oldest includable transaction may have waited before
/// clients are refused: none. Measured on the load bench past capacity, a 2-s bound cut
/// the median wait of what was admitted by 20–50 % but cost 4–12 % of the throughput, and
/// open-loop clients resending out of order stranded their later nonces on gaps: an
/// operator who prefers a bounded wait to the last transactions per second sets it.
pub const DEFAULT_MAX_WAIT_MS: u64 = 0;
/// How far past a sender's next nonce a transaction is held, waiting for the ones before
/// it; further ahead it is refused (`nonce_gap`). Bounds what one sender holds on a gap.
pub const MAX_NONCE_AHEAD: u64 = 64;
/// Transactions waiting on a gap take at most `1 / HELD_SHARE` of the mempool's count.
const HELD_SHARE: usize = 4;
/// A sender's transactions that have waited on a gap for this many commits are dropped:
/// its client gave up on the missing one, or lost it.
pub const MAX_HELD_COMMITS: u64 = 100;

#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MempoolConfig {
    pub max_txs: usize,
    pub max_bytes: usize,
    /// Clients are refused while the oldest includable transaction has waited longer;
    /// 0: never (only `max_txs` and `max_bytes` bound the backlog).
    pub max_wait_ms: u64,
}

impl Default for MempoolConfig {
    fn default() -> Self {
        MempoolConfig {
            max_txs: DEFAULT_MAX_TXS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_wait_ms: DEFAULT_MAX_WAIT_MS,
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
    #[error(
        "the oldest proposable transaction has waited {waited_ms} ms (more than {max_wait_ms} ms): the chain is behind; retry shortly"
    )]
    Backlogged { waited_ms: u64, max_wait_ms: u64 },
    #[error("nonce {got} is already used; the sender's next nonce is {expected}")]
    NonceTooLow { expected: Nonce, got: Nonce },
    #[error("nonce {got} is more than {MAX_NONCE_AHEAD} past the sender's next nonce {expected}")]
    NonceGap { expected: Nonce, got: Nonce },
    #[error(
        "nonce {got} waits on a gap and {held} transactions already wait; send nonce {expected} first"
    )]
    TooManyHeld {
        expected: Nonce,
        got: Nonce,
        held: usize,
    },
    #[error("transaction of {len} bytes exceeds the bound of {MAX_TX_BYTES} bytes")]
    TooLarge { len: usize },
    #[error(transparent)]
    Invalid(TxInvalid),
}

impl AdmitError {
    /// A stable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            AdmitError::Duplicate(_) => "duplicate",
            AdmitError::Full { .. } => "mempool_full",
            AdmitError::Backlogged { .. } => "busy",
            AdmitError::TooLarge { .. } => "tx_too_large",
            AdmitError::NonceTooLow { .. } => "nonce_too_low",
            AdmitError::NonceGap { .. } | AdmitError::TooManyHeld { .. } => "nonce_gap",
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
    /// Its place in line: the arrival order, or for one that waited on a gap, the
    /// order in which it became includable.
    seq: u64,
    /// When it arrived, or stopped waiting on a gap.
    queued: Instant,
}

/// One sender's pending transactions by nonce.
#[derive(Debug)]
struct Pending {
    /// The nonce after the gap-free run from the sender's committed nonce: those before
    /// it are includable, those after it wait on a gap.
    next: Nonce,
    txs: BTreeMap<Nonce, TxHash>,
    /// The commit count at which some of `txs` began to wait on a gap.
    held_since: Option<u64>,
}

impl Pending {
    fn new(committed: Nonce) -> Pending {
        Pending {
            next: committed,
            txs: BTreeMap::new(),
            held_since: None,
        }
    }

    /// Moves `next` past the run that now follows it.
    fn advance(&mut self) {
        while self.txs.contains_key(&self.next) {
            self.next = self.next.next();
        }
    }

    /// A new committed nonce: what it used is stale (returned, to drop), and the run is
    /// counted again from it.
    fn recommit(&mut self, committed: Nonce) -> Vec<TxHash> {
        let kept = self.txs.split_off(&committed);
        let stale = std::mem::replace(&mut self.txs, kept);
        self.next = committed;
        self.advance();
        stale.into_values().collect()
    }

    /// Whether its transaction of `nonce` is includable (it waits on no gap).
    fn includes(&self, nonce: Nonce) -> bool {
        nonce < self.next
    }

    /// How many wait on a gap (at most [`MAX_NONCE_AHEAD`]).
    fn held(&self) -> usize {
        self.txs.range(self.next..).count()
    }
}

/// Pending transactions in arrival order, with each sender's by nonce.
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    chain_id: ChainId,
    by_hash: HashMap<TxHash, Entry>,
    order: BTreeMap<u64, TxHash>,
    by_sender: HashMap<AccountId, Pending>,
    /// Transactions waiting on a gap, over all senders.
    held: usize,
    /// Commits seen, to age what waits on a gap.
    commits: u64,
    next_seq: u64,
    bytes: usize,
    /// When the first includable transaction in line was queued, as of the last commit
    /// (or of the admission that ended an empty line): see [`Mempool::check_pace`].
    head_queued: Option<Instant>,
}

impl Mempool {
    pub fn new(config: MempoolConfig, chain_id: ChainId) -> Mempool {
        Mempool {
            config,
            chain_id,
            by_hash: HashMap::new(),
            order: BTreeMap::new(),
            by_sender: HashMap::new(),
            held: 0,
            commits: 0,
            next_seq: 0,
            bytes: 0,
            head_queued: None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Whether a block could include something now (not everything waits on a gap).
    pub fn has_includable(&self) -> bool {
        self.by_hash.len() > self.held
    }

    pub fn contains(&self, hash: &TxHash) -> bool {
        self.by_hash.contains_key(hash)
    }

    /// The nonce the sender's next transaction must carry, counting pending ones (the
    /// first gap in them).
    pub fn next_nonce(&self, sender: &AccountId) -> Option<Nonce> {
        self.by_sender.get(sender).map(|pending| pending.next)
    }

    /// Changes one sender's pending run, if it has one, keeping the count of held
    /// transactions right.
    fn with_sender<T>(
        &mut self,
        sender: AccountId,
        change: impl FnOnce(&mut Pending) -> T,
    ) -> Option<T> {
        let pending = self.by_sender.get_mut(&sender)?;
        self.held -= pending.held();
        let out = change(pending);
        let held = pending.held();
        self.held += held;
        pending.held_since = match held {
            0 => None,
            _ => pending.held_since.or(Some(self.commits)),
        };
        if pending.txs.is_empty() {
            self.by_sender.remove(&sender);
        }
        Some(out)
    }

    /// Whether a transaction of `encoded_len` bytes fits: checked before its signature, so
    /// that a full mempool refuses cheaply.
    pub fn check_room(&self, encoded_len: usize) -> Result<(), AdmitError> {
        self.check_room_for(1, encoded_len)
    }

    /// Whether `txs` more transactions of `encoded_len` bytes in all would fit.
    pub fn check_room_for(&self, txs: usize, encoded_len: usize) -> Result<(), AdmitError> {
        if self.by_hash.len() + txs > self.config.max_txs
            || self.bytes + encoded_len > self.config.max_bytes
        {
            return Err(AdmitError::Full {
                txs: self.by_hash.len(),
                bytes: self.bytes,
            });
        }
        Ok(())
    }

    /// Whether a client's transactions are taken at `now`: not while the queue stands,
    /// that is, while the first includable transaction in line has waited more than
    /// `max_wait_ms`. What is first in line is proposed first and leaves at its commit
    /// (or when its nonce is used), so its wait is the queue's. A peer's relay is not
    /// paced: another validator took it. A batch is checked before it is decoded.
    pub fn check_pace(&self, now: Instant) -> Result<(), AdmitError> {
        let max_wait = Duration::from_millis(self.config.max_wait_ms);
        let waited = self.head_wait(now);
        if !max_wait.is_zero() && waited > max_wait {
            return Err(AdmitError::Backlogged {
                waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                max_wait_ms: self.config.max_wait_ms,
            });
        }
        Ok(())
    }

    /// How long the first includable transaction in line has waited at `now` (zero when
    /// none is).
    pub fn head_wait(&self, now: Instant) -> Duration {
        self.head_queued.map_or(Duration::ZERO, |queued| {
            now.saturating_duration_since(queued)
        })
    }

    /// Admits a transaction whose signature the caller has already verified (signature
    /// checks are the expensive part and run outside the mempool lock).
    pub fn admit_verified<V: StateView + ?Sized>(
        &mut self,
        state: &V,
        admissible: Admissible,
        now: Instant,
    ) -> Result<TxHash, AdmitError> {
        let Admissible {
            tx,
            hash,
            encoded_len,
        } = admissible;
        if self.by_hash.contains_key(&hash) {
            return Err(AdmitError::Duplicate(hash));
        }
        // A single submission's decode enforces this; a batch's (client or peer) does not.
        if encoded_len > MAX_TX_BYTES {
            return Err(AdmitError::TooLarge { len: encoded_len });
        }
        self.check_room(encoded_len)?;
        let sender = tx.tx.sender_id();
        let overlay = Overlay::new(state);
        let account = execute::check_envelope(&overlay, &self.chain_id, &tx, Some(tx.tx.nonce))
            .map_err(AdmitError::Invalid)?;
        let nonce = tx.tx.nonce;
        let (expected, used) = self
            .by_sender
            .get(&sender)
            .map_or((account.nonce, false), |p| {
                (p.next, p.txs.contains_key(&nonce))
            });
        if nonce < account.nonce || used {
            return Err(AdmitError::NonceTooLow {
                expected,
                got: nonce,
            });
        }
        if nonce.0 > expected.0.saturating_add(MAX_NONCE_AHEAD) {
            return Err(AdmitError::NonceGap {
                expected,
                got: nonce,
            });
        }
        // Held transactions leave only when their gap fills: a quarter of the pool at
        // most, so that the rest (and the transactions that fill gaps) always find room.
        if nonce > expected && self.held >= self.config.max_txs / HELD_SHARE {
            return Err(AdmitError::TooManyHeld {
                expected,
                got: nonce,
                held: self.held,
            });
        }
        self.insert(hash, tx, encoded_len, account.nonce, now);
        Ok(hash)
    }

    fn insert(
        &mut self,
        hash: TxHash,
        tx: SignedTransaction,
        bytes: usize,
        committed: Nonce,
        now: Instant,
    ) {
        let seq = self.take_seq();
        self.order.insert(seq, hash);
        self.bytes += bytes;
        let (sender, nonce) = (tx.tx.sender_id(), tx.tx.nonce);
        self.by_sender
            .entry(sender)
            .or_insert_with(|| Pending::new(committed));
        let was = self.with_sender(sender, |pending| {
            let was = pending.next;
            pending.txs.insert(nonce, hash);
            pending.advance();
            was
        });
        if let Some(was) = was {
            self.requeue(sender, was.next(), now);
        }
        let entry = Entry {
            tx,
            bytes,
            seq,
            queued: now,
        };
        self.by_hash.insert(hash, entry);
        if self.head_queued.is_none() && self.has_includable() {
            self.head_queued = Some(now);
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Puts the sender's transactions from nonce `from` to the end of its includable run
    /// at the back of the line, queued `now`: they waited on a gap until now.
    fn requeue(&mut self, sender: AccountId, from: Nonce, now: Instant) {
        let Some(pending) = self.by_sender.get(&sender) else {
            return;
        };
        if from >= pending.next {
            return;
        }
        let hashes: Vec<TxHash> = pending
            .txs
            .range(from..pending.next)
            .map(|(_, h)| *h)
            .collect();
        for hash in hashes {
            let seq = self.take_seq();
            let Some(entry) = self.by_hash.get_mut(&hash) else {
                continue;
            };
            self.order.remove(&entry.seq);
            self.order.insert(seq, hash);
            (entry.seq, entry.queued) = (seq, now);
        }
    }

    /// Includable transactions (none that waits on a gap), up to `max_txs` and
    /// `max_bytes` in total: senders in the order of their first includable transaction
    /// in line,
    /// each sender's run in nonce order (so a cut never keeps a nonce without the ones
    /// before it).
    pub fn reap(&self, max_txs: usize, max_bytes: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut seen = HashSet::new();
        for hash in self.order.values() {
            let Some(entry) = self.by_hash.get(hash) else {
                continue;
            };
            let sender = entry.tx.tx.sender_id();
            let Some(pending) = self.by_sender.get(&sender) else {
                continue;
            };
            // One that waits on a gap holds no place in line for its sender.
            if !pending.includes(entry.tx.tx.nonce) || !seen.insert(sender) {
                continue;
            }
            for hash in pending.txs.range(..pending.next).map(|(_, hash)| hash) {
                let Some(entry) = self.by_hash.get(hash) else {
                    continue;
                };
                if out.len() >= max_txs || bytes + entry.bytes > max_bytes {
                    return out;
                }
                bytes += entry.bytes;
                out.push(entry.tx.clone());
            }
        }
        out
    }

    /// After a commit at `now` of `committed` (hash and sender of each transaction in the
    /// block): drops them, then re-checks the pending runs of their senders only (no
    /// other sender's committed nonce moved), dropping what the new state made stale and
    /// requeueing what it made includable; drops what has waited on a gap for
    /// [`MAX_HELD_COMMITS`]; last, notes when the first in line was queued.
    pub fn update_after_commit<V: StateView + ?Sized>(
        &mut self,
        state: &V,
        committed: &[(TxHash, AccountId)],
        now: Instant,
    ) {
        let senders: BTreeSet<AccountId> = committed.iter().map(|(_, sender)| *sender).collect();
        for (hash, _) in committed {
            self.remove(hash);
        }
        let overlay = Overlay::new(state);
        for sender in senders {
            if !self.by_sender.contains_key(&sender) {
                continue;
            }
            // An account that cannot be read (or is gone) leaves nothing includable.
            let nonce = match overlay.account(sender) {
                Ok(Some(account)) => account.nonce,
                _ => Nonce(u64::MAX),
            };
            let recommitted = self.with_sender(sender, |p| (p.next, p.recommit(nonce)));
            let Some((was, stale)) = recommitted else {
                continue;
            };
            for hash in stale {
                self.remove(&hash);
            }
            self.requeue(sender, was, now);
        }
        self.commits += 1;
        self.expire_held();
        self.head_queued = self.first_in_line();
    }

    /// When the first includable transaction in line was queued. Walks the line past
    /// those that wait on a gap: at most a quarter of the pool, once per commit.
    fn first_in_line(&self) -> Option<Instant> {
        self.order.values().find_map(|hash| {
            let entry = self.by_hash.get(hash)?;
            let pending = self.by_sender.get(&entry.tx.tx.sender_id())?;
            pending.includes(entry.tx.tx.nonce).then_some(entry.queued)
        })
    }

    fn expire_held(&mut self) {
        let Some(before) = self.commits.checked_sub(MAX_HELD_COMMITS) else {
            return;
        };
        if self.held == 0 {
            return;
        }
        let expired: Vec<TxHash> = self
            .by_sender
            .values()
            .filter(|p| p.held_since.is_some_and(|since| since <= before))
            .flat_map(|p| p.txs.range(p.next..).map(|(_, hash)| *hash))
            .collect();
        if !expired.is_empty() {
            tracing::debug!(
                txs = expired.len(),
                "dropping transactions that waited on a gap too long"
            );
        }
        for hash in expired {
            self.remove(&hash);
        }
    }

    /// Drops one transaction; its sender's run is not re-counted (a caller removing
    /// from the middle of a run calls [`Pending::recommit`]).
    fn remove(&mut self, hash: &TxHash) {
        let Some(entry) = self.by_hash.remove(hash) else {
            return;
        };
        self.order.remove(&entry.seq);
        self.bytes -= entry.bytes;
        let (sender, nonce) = (entry.tx.tx.sender_id(), entry.tx.tx.nonce);
        self.with_sender(sender, |pending| pending.txs.remove(&nonce));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{create_account_tx, genesis_for};
    use bidchain_runtime::crypto::Keypair;
    use bidchain_runtime::tx::Role;

    /// A pool of at most `max_txs` for a one-validator genesis, its state and the hub.
    fn setup(
        max_txs: usize,
    ) -> (
        Mempool,
        std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
        Keypair,
    ) {
        let genesis = genesis_for(&[1], &[]);
        let state = genesis.initial_state().unwrap();
        let config = MempoolConfig {
            max_txs,
            max_bytes: 1 << 20,
            ..MempoolConfig::default()
        };
        let pool = Mempool::new(config, genesis.chain_id);
        (pool, state, Keypair::from_seed_for_tests(1))
    }

    /// Admission time where a test does not look at waits.
    fn now() -> Instant {
        Instant::now()
    }

    /// `tx` as admission sees it, with an encoded length the test chooses.
    fn sized(tx: SignedTransaction, encoded_len: usize) -> Admissible {
        Admissible {
            hash: tx.hash(),
            tx,
            encoded_len,
        }
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
        let (mut pool, state, hub) = setup(3);
        pool.admit_verified(&state, sized(tx(&hub, 0), 100), now())
            .unwrap();
        assert!(matches!(
            pool.admit_verified(&state, sized(tx(&hub, 0), 100), now()),
            Err(AdmitError::Duplicate(_))
        ));
        assert!(matches!(
            pool.admit_verified(&state, sized(tx(&hub, 2 + MAX_NONCE_AHEAD), 100), now()),
            Err(AdmitError::NonceGap {
                expected: Nonce(1),
                ..
            })
        ));
        // Room for a batch counts its transactions, not one more.
        pool.check_room_for(2, 200).unwrap();
        assert!(matches!(
            pool.check_room_for(3, 300),
            Err(AdmitError::Full { .. })
        ));
        let err = pool
            .admit_verified(&state, sized(tx(&hub, 1), MAX_TX_BYTES + 1), now())
            .unwrap_err();
        assert_eq!(err.code(), "tx_too_large");
        pool.admit_verified(&state, sized(tx(&hub, 1), 100), now())
            .unwrap();
        pool.admit_verified(&state, sized(tx(&hub, 2), 100), now())
            .unwrap();
        assert!(matches!(
            pool.admit_verified(&state, sized(tx(&hub, 3), 100), now()),
            Err(AdmitError::Full { .. })
        ));
        let stranger = Keypair::from_seed_for_tests(77);
        let err = Mempool::new(MempoolConfig::default(), genesis_for(&[1], &[]).chain_id)
            .admit_verified(&state, sized(tx(&stranger, 0), 100), now())
            .unwrap_err();
        assert_eq!(err.code(), "unknown_sender");
        let reaped: Vec<_> = pool.reap(10, 1 << 20).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(reaped, vec![Nonce(0), Nonce(1), Nonce(2)]);
        assert_eq!(pool.reap(2, 1 << 20).len(), 2);
        assert_eq!(pool.reap(10, 250).len(), 2);
    }

    #[test]
    fn commit_removes_included_and_stale() {
        let (mut pool, state, hub) = setup(3);
        let first = tx(&hub, 0);
        pool.admit_verified(&state, sized(first.clone(), 100), now())
            .unwrap();
        pool.admit_verified(&state, sized(tx(&hub, 1), 100), now())
            .unwrap();
        // Nothing committed yet and the state still says nonce 0: both stay.
        pool.update_after_commit(&state, &[], now());
        assert_eq!(pool.len(), 2);
        // The first is dropped as committed, but this state was not advanced: the second
        // now waits on a gap at nonce 0, held and not includable.
        let sender = first.tx.sender_id();
        pool.update_after_commit(&state, &[(first.hash(), sender)], now());
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.bytes, 100);
        assert!(!pool.has_includable());
        assert!(pool.reap(10, 1 << 20).is_empty());
        assert_eq!(pool.next_nonce(&sender), Some(Nonce(0)));
    }

    #[test]
    fn a_transaction_ahead_of_its_nonce_waits_for_the_gap_to_fill() {
        let (mut pool, state, hub) = setup(DEFAULT_MAX_TXS);
        let hub_id = AccountId::of(&hub.public());
        for nonce in [3, 1] {
            pool.admit_verified(&state, sized(tx(&hub, nonce), 100), now())
                .unwrap();
        }
        assert_eq!(pool.len(), 2);
        assert!(!pool.has_includable());
        assert!(pool.reap(10, 1 << 20).is_empty());
        assert_eq!(pool.next_nonce(&hub_id), Some(Nonce(0)));
        assert_eq!(
            pool.admit_verified(&state, sized(tx(&hub, 1), 100), now())
                .unwrap_err()
                .code(),
            "duplicate"
        );
        // Nonce 0 fills the first gap: 0 and 1 are includable, 3 still waits on 2.
        pool.admit_verified(&state, sized(tx(&hub, 0), 100), now())
            .unwrap();
        assert!(pool.has_includable());
        assert_eq!(pool.next_nonce(&hub_id), Some(Nonce(2)));
        // Handed out in nonce order, though 1 arrived first: a cut keeps a prefix.
        let reaped: Vec<_> = pool.reap(10, 1 << 20).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(reaped, vec![Nonce(0), Nonce(1)]);
        let cut: Vec<_> = pool.reap(1, 1 << 20).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(cut, vec![Nonce(0)]);
        pool.admit_verified(&state, sized(tx(&hub, 2), 100), now())
            .unwrap();
        assert_eq!(pool.next_nonce(&hub_id), Some(Nonce(4)));
        assert_eq!(pool.reap(10, 1 << 20).len(), 4);
        assert_eq!(pool.held, 0);
    }

    #[test]
    fn held_transactions_take_at_most_a_quarter_of_the_pool() {
        let (mut pool, state, hub) = setup(8);
        for nonce in [2, 3] {
            pool.admit_verified(&state, sized(tx(&hub, nonce), 100), now())
                .unwrap();
        }
        let err = pool
            .admit_verified(&state, sized(tx(&hub, 4), 100), now())
            .unwrap_err();
        assert!(
            matches!(err, AdmitError::TooManyHeld { held: 2, .. }),
            "{err}"
        );
        assert_eq!(err.code(), "nonce_gap");
        // What fills the gap still gets in, and then so does the rest.
        for nonce in [0, 1, 4] {
            pool.admit_verified(&state, sized(tx(&hub, nonce), 100), now())
                .unwrap();
        }
        assert_eq!(pool.reap(10, 1 << 20).len(), 5);
    }

    #[test]
    fn a_gap_that_never_fills_is_dropped_after_max_held_commits() {
        let (mut pool, state, hub) = setup(DEFAULT_MAX_TXS);
        pool.admit_verified(&state, sized(tx(&hub, 2), 100), now())
            .unwrap();
        for _ in 0..MAX_HELD_COMMITS - 1 {
            pool.update_after_commit(&state, &[], now());
        }
        assert_eq!(pool.len(), 1);
        // Filling part of the gap does not restart the clock on what still waits.
        pool.admit_verified(&state, sized(tx(&hub, 0), 100), now())
            .unwrap();
        pool.update_after_commit(&state, &[], now());
        assert_eq!(pool.len(), 1, "the includable one stays");
        assert_eq!((pool.held, pool.bytes), (0, 100));
        assert!(pool.has_includable());
    }

    #[test]
    fn clients_are_refused_while_the_first_in_line_waited_over_max_wait() {
        let genesis = genesis_for(&[1], &[2, 3]);
        let state = genesis.initial_state().unwrap();
        let bounded = MempoolConfig {
            max_wait_ms: 2_000,
            ..MempoolConfig::default()
        };
        let mut pool = Mempool::new(bounded, genesis.chain_id.clone());
        let keys: Vec<_> = (1..=3).map(Keypair::from_seed_for_tests).collect();
        let ids: Vec<_> = keys.iter().map(|k| AccountId::of(&k.public())).collect();
        let (t0, ms) = (Instant::now(), Duration::from_millis);
        let max_wait = ms(bounded.max_wait_ms);
        let first = tx(&keys[0], 0);
        pool.admit_verified(&state, sized(first.clone(), 100), t0)
            .unwrap();
        pool.admit_verified(&state, sized(tx(&keys[1], 0), 100), t0 + ms(1_000))
            .unwrap();
        // The third sender's second transaction waits on a gap: not in line yet.
        pool.admit_verified(&state, sized(tx(&keys[2], 1), 100), t0)
            .unwrap();
        pool.check_pace(t0 + max_wait).unwrap();
        let err = pool.check_pace(t0 + max_wait + ms(1)).unwrap_err();
        assert!(matches!(err, AdmitError::Backlogged { .. }), "{err}");
        assert_eq!(err.code(), "busy");
        // Its gap fills late: both of that sender's are queued from then, at the back.
        pool.admit_verified(&state, sized(tx(&keys[2], 0), 100), t0 + max_wait)
            .unwrap();
        // The first leaves with its block: the next in line arrived a second later.
        pool.update_after_commit(&state, &[(first.hash(), ids[0])], t0 + max_wait);
        pool.check_pace(t0 + max_wait + ms(1_000)).unwrap();
        let late = t0 + max_wait + ms(1_001);
        assert!(pool.check_pace(late).is_err());
        let second = tx(&keys[1], 0).hash();
        pool.update_after_commit(&state, &[(second, ids[1])], late);
        pool.check_pace(t0 + max_wait * 2).unwrap();
        assert!(pool.check_pace(t0 + max_wait * 2 + ms(1)).is_err());
        // Nothing includable left: nothing waits in line.
        let third: Vec<_> = (0..2).map(|n| (tx(&keys[2], n).hash(), ids[2])).collect();
        pool.update_after_commit(&state, &third, late);
        assert!(pool.is_empty());
        pool.check_pace(t0 + max_wait * 10).unwrap();
        // With the bound off (the default), a standing line is not refused.
        let mut pool = Mempool::new(MempoolConfig::default(), genesis.chain_id.clone());
        pool.admit_verified(&state, sized(first, 100), t0).unwrap();
        pool.check_pace(t0 + max_wait * 10).unwrap();
    }

    #[test]
    fn a_transaction_waiting_on_a_gap_holds_no_place_in_line() {
        let genesis = genesis_for(&[1], &[2]);
        let state = genesis.initial_state().unwrap();
        let mut pool = Mempool::new(MempoolConfig::default(), genesis.chain_id.clone());
        let (a, b) = (
            Keypair::from_seed_for_tests(1),
            Keypair::from_seed_for_tests(2),
        );
        // A's nonce 2 arrives first and waits on 1; B's comes next, then A's nonce 0.
        for t in [tx(&a, 2), tx(&b, 0), tx(&a, 0)] {
            pool.admit_verified(&state, sized(t, 100), now()).unwrap();
        }
        let reaped: Vec<_> = pool.reap(10, 1 << 20).iter().map(|t| t.tx.sender).collect();
        assert_eq!(reaped, vec![b.public(), a.public()]);
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
            pool.admit_verified(&state, sized(t.clone(), 100), now())
                .unwrap();
        }
        pool.admit_verified(&state, sized(tx(&bidder, 0), 100), now())
            .unwrap();
        // A block with the hub's first transaction: the state's hub nonce moves to 1.
        let hub_id = AccountId::of(&hub.public());
        let mut overlay = Overlay::new(&state);
        let mut account = overlay.account(hub_id).unwrap().unwrap();
        account.nonce = Nonce(1);
        overlay.put(bidchain_runtime::state::StateKey::Account(hub_id), &account);
        for (key, value) in overlay.into_changes() {
            state.insert(key, value.unwrap());
        }
        pool.update_after_commit(&state, &[(hub_txs[0].hash(), hub_id)], now());
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.next_nonce(&hub_id), Some(Nonce(3)));
        let bidder_id = AccountId::of(&bidder.public());
        assert_eq!(pool.next_nonce(&bidder_id), Some(Nonce(1)));
        let reaped: Vec<_> = pool.reap(10, 1 << 20).iter().map(|t| t.tx.nonce).collect();
        assert_eq!(reaped, vec![Nonce(1), Nonce(2), Nonce(0)]);
    }
}
