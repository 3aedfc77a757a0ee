//! The chain as consensus sees it: build a proposal, check someone else's, commit a block
//! with its certificate. This is the interface any consensus engine drives; it holds no
//! consensus logic itself.

use std::collections::BTreeMap;

use bidchain_genesis::Genesis;
use bidchain_runtime::block::{
    self, Block, BlockHash, CertificateError, CommitCertificate, Header,
};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::contract::Contracts;
use bidchain_runtime::crypto::PublicKey;
use bidchain_runtime::execute::{self, BlockEnv, ExecError, Executed, TxInvalid};
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{AccountId, ChainId, Height, Nonce};
use bidchain_runtime::merkle;
use bidchain_runtime::receipt::Receipt;
use bidchain_runtime::smt::TreeUpdate;
use bidchain_runtime::state::{self, Overlay, StateError, StateKey, StateView};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::SignedTransaction;
use bidchain_runtime::validator::ValidatorSet;

use crate::storage::{BlockCommit, Durability, Storage, StorageError};

/// Why a block could not be built, accepted or committed.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("execution: {0}")]
    Exec(#[from] ExecError),
    #[error("commit certificate: {0}")]
    Certificate(#[from] CertificateError),
    #[error("block is for chain {got}, not {expected}")]
    WrongChain { expected: ChainId, got: ChainId },
    #[error("block height {got} is not the next height {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("block's parent {got} is not the tip {expected}")]
    WrongParent { expected: BlockHash, got: BlockHash },
    #[error("block time {got} is not after the previous block's {prev}")]
    TimeNotIncreasing { prev: Timestamp, got: Timestamp },
    #[error("header field {field} is {got}, execution gives {expected}")]
    HeaderMismatch {
        field: &'static str,
        expected: Hash,
        got: Hash,
    },
    #[error("block holds {0} transactions, more than the block bound")]
    TooManyTxs(usize),
    #[error("state has no validator set")]
    NoValidatorSet,
}

impl ChainError {
    /// This node's storage, state or contract host failed: not a fault of the block or of
    /// its sender. Such a block must not be voted against (another validator may run it),
    /// so the node stops instead of calling it invalid. A contract host failure cannot come
    /// from a transaction: contracts are fixed by genesis and their inputs bounded.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            ChainError::Storage(_)
                | ChainError::State(_)
                | ChainError::NoValidatorSet
                | ChainError::Exec(ExecError::State(_) | ExecError::ContractHost { .. })
        )
    }
}

/// The last committed block, or genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tip {
    pub height: Height,
    pub block_id: BlockHash,
    pub time: Timestamp,
}

/// A block with the result of executing it, ready to be committed.
#[derive(Debug)]
pub struct Proposal {
    pub block: Block,
    pub executed: Executed,
    /// The state tree's nodes after this block: written when it commits.
    pub state: TreeUpdate,
}

#[derive(Debug)]
pub struct Chain {
    storage: Storage,
    genesis: Genesis,
    contracts: Contracts,
}

impl Chain {
    /// `contracts` are the ones `genesis` pins (`Genesis::contracts`).
    pub fn new(storage: Storage, genesis: Genesis, contracts: Contracts) -> Chain {
        Chain {
            storage,
            genesis,
            contracts,
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn chain_id(&self) -> &ChainId {
        &self.genesis.chain_id
    }

    pub fn tip(&self) -> Result<Tip, ChainError> {
        let height = self.storage.latest_height()?;
        if height == Height::GENESIS {
            return Ok(Tip {
                height,
                block_id: self.genesis.block_id(),
                time: self.genesis.genesis_time,
            });
        }
        let header = self
            .storage
            .get::<crate::storage::Headers>(&height)?
            .ok_or(StorageError::MissingTable("headers"))?;
        Ok(Tip {
            height,
            block_id: header.id(),
            time: header.time,
        })
    }

    /// The validator set that signs the next block.
    pub fn validator_set(&self) -> Result<ValidatorSet, ChainError> {
        validator_set_in(&self.storage)
    }

    /// Builds the next block from `candidates` at `time`. Candidates that have become
    /// invalid since admission (their nonce was used meanwhile) are left out. Their
    /// signatures were checked on admission (they come from the mempool).
    pub fn build_proposal(
        &self,
        candidates: Vec<SignedTransaction>,
        time: Timestamp,
        proposer: PublicKey,
    ) -> Result<Proposal, ChainError> {
        let tip = self.tip()?;
        let last_commit = match tip.height {
            Height::GENESIS => None,
            height => Some(
                self.storage
                    .get::<crate::storage::Commits>(&height)?
                    .ok_or(StorageError::MissingTable("commits"))?,
            ),
        };
        let env = self.env(&tip, time, last_commit);
        // Stale nonces are dropped up front: each one found by execution costs a re-run.
        let mut candidates = self.in_nonce_order(candidates)?;
        let executed = loop {
            match execute::execute_block(&self.storage, &self.contracts, &env, &candidates) {
                Ok(executed) => break executed,
                Err(ExecError::InvalidTx {
                    index,
                    reason: TxInvalid::BlockFuelSpent { .. },
                }) => {
                    // The rest wait in the mempool for the next block.
                    candidates.truncate(index);
                }
                Err(ExecError::InvalidTx { index, reason }) => {
                    tracing::debug!(index, %reason, "dropping a no longer valid transaction");
                    candidates.remove(index);
                }
                Err(err) => return Err(err.into()),
            }
        };
        let txs = BoundedVec::new(candidates).map_err(|e| ChainError::TooManyTxs(e.len))?;
        let state = self.storage.state_update(&executed.changes)?;
        let header = self.header_for(&self.storage, &env, &executed, proposer, state.root)?;
        Ok(Proposal {
            block: Block {
                header,
                txs,
                last_commit: env.last_commit,
            },
            executed,
            state,
        })
    }

    /// The candidates whose nonces follow their sender's committed nonce without a gap,
    /// in their order, except that one that arrives ahead of its sender's next nonce
    /// waits for it (a mempool may still hold transactions a block just used, and one
    /// sender's may come out of nonce order).
    fn in_nonce_order(
        &self,
        candidates: Vec<SignedTransaction>,
    ) -> Result<Vec<SignedTransaction>, ChainError> {
        let state = Overlay::new(&self.storage);
        let mut next: BTreeMap<AccountId, Nonce> = BTreeMap::new();
        let mut waiting: BTreeMap<(AccountId, Nonce), SignedTransaction> = BTreeMap::new();
        let mut kept = Vec::with_capacity(candidates.len());
        for stx in candidates {
            let sender = stx.tx.sender_id();
            let expected = match next.get(&sender) {
                Some(nonce) => *nonce,
                None => match state.account(sender)? {
                    Some(account) => account.nonce,
                    None => continue,
                },
            };
            if stx.tx.nonce > expected {
                waiting.insert((sender, stx.tx.nonce), stx);
                continue;
            }
            if stx.tx.nonce < expected {
                continue;
            }
            kept.push(stx);
            let mut after = expected.next();
            while let Some(stx) = waiting.remove(&(sender, after)) {
                kept.push(stx);
                after = after.next();
            }
            next.insert(sender, after);
        }
        Ok(kept)
    }

    fn env(&self, tip: &Tip, time: Timestamp, last_commit: Option<CommitCertificate>) -> BlockEnv {
        BlockEnv {
            chain_id: self.genesis.chain_id.clone(),
            height: tip.height.next(),
            time,
            prev_block_id: tip.block_id,
            last_commit,
        }
    }

    fn header_for<V: StateView>(
        &self,
        view: &V,
        env: &BlockEnv,
        executed: &Executed,
        proposer: PublicKey,
        state_root: Hash,
    ) -> Result<Header, ChainError> {
        let validators_hash = validator_set_in(view)?.hash();
        let next_set: Option<ValidatorSet> =
            state::get_after(view, &executed.changes, StateKey::ValidatorSet)?;
        let next_validators_hash = next_set.ok_or(ChainError::NoValidatorSet)?.hash();
        Ok(Header {
            chain_id: self.genesis.chain_id.clone(),
            height: env.height,
            time: env.time,
            prev_block_id: env.prev_block_id,
            tx_root: tx_root(&executed.receipts),
            receipts_root: receipts_root(&executed.receipts),
            state_root,
            validators_hash,
            next_validators_hash,
            proposer,
            last_commit_hash: block::last_commit_hash(&env.last_commit),
        })
    }

    /// Checks a proposed block against the tip, checks the signatures of its transactions
    /// that `vouch` does not vouch for (see [`execute::verify_signatures`]; asked only once
    /// the block's position holds) and
    /// re-executes it; every header field must match what this node computes. Whether its
    /// time is timely is the driver's call, made when the proposal arrives.
    pub fn verify_proposal(
        &self,
        block: Block,
        vouch: impl FnOnce(&[SignedTransaction]) -> Vec<bool>,
    ) -> Result<Proposal, ChainError> {
        let tip = self.tip()?;
        let executed = self.execute_checked(&self.storage, &tip, &block, vouch)?;
        self.check_state_root(block, executed)
    }

    /// [`Chain::verify_proposal`] but for the state root, on top of `view` whose last
    /// block is `tip`: the committed state, or (catching up) that with the changes of
    /// fetched blocks still being written. The state root needs the tree after the
    /// parent: [`Chain::check_state_root`] checks it once the parent is written.
    pub fn execute_checked<V: StateView + Clone + Send + 'static>(
        &self,
        view: &V,
        tip: &Tip,
        block: &Block,
        vouch: impl FnOnce(&[SignedTransaction]) -> Vec<bool>,
    ) -> Result<Executed, ChainError> {
        let got = &block.header;
        self.check_position(tip, got)?;
        execute::verify_signatures(&block.txs, &vouch(&block.txs))?;
        let env = self.env(tip, got.time, block.last_commit.clone());
        let executed = execute::execute_block(view, &self.contracts, &env, &block.txs)?;
        let expected = self.header_for(view, &env, &executed, got.proposer, got.state_root)?;
        let fields = [
            ("tx_root", expected.tx_root, got.tx_root),
            ("receipts_root", expected.receipts_root, got.receipts_root),
            (
                "validators_hash",
                expected.validators_hash,
                got.validators_hash,
            ),
            (
                "next_validators_hash",
                expected.next_validators_hash,
                got.next_validators_hash,
            ),
            (
                "last_commit_hash",
                expected.last_commit_hash,
                got.last_commit_hash,
            ),
        ];
        for (field, expected, got) in fields {
            mismatch(field, expected, got)?;
        }
        Ok(executed)
    }

    /// The state tree after `executed`, over the committed state (which must be at
    /// `block`'s parent); the header's state root must be its root.
    pub fn check_state_root(
        &self,
        block: Block,
        executed: Executed,
    ) -> Result<Proposal, ChainError> {
        let state = self.storage.state_update(&executed.changes)?;
        mismatch("state_root", state.root, block.header.state_root)?;
        Ok(Proposal {
            block,
            executed,
            state,
        })
    }

    fn check_position(&self, tip: &Tip, header: &Header) -> Result<(), ChainError> {
        if header.chain_id != self.genesis.chain_id {
            let expected = self.genesis.chain_id.clone();
            return Err(ChainError::WrongChain {
                expected,
                got: header.chain_id.clone(),
            });
        }
        if header.height != tip.height.next() {
            return Err(ChainError::WrongHeight {
                expected: tip.height.next(),
                got: header.height,
            });
        }
        if header.prev_block_id != tip.block_id {
            return Err(ChainError::WrongParent {
                expected: tip.block_id,
                got: header.prev_block_id,
            });
        }
        if header.time <= tip.time {
            return Err(ChainError::TimeNotIncreasing {
                prev: tip.time,
                got: header.time,
            });
        }
        Ok(())
    }

    /// Checks that `certificate` proves a quorum of the validators of `view`, the state
    /// `header`'s block executes on, precommitted that block on this chain. The header
    /// must name that set, so the block id the certificate carries also binds the set.
    pub fn check_certificate<V: StateView + ?Sized>(
        &self,
        view: &V,
        header: &Header,
        certificate: CommitCertificate,
    ) -> Result<CheckedCertificate, ChainError> {
        let validators = validator_set_in(view)?;
        mismatch("validators_hash", validators.hash(), header.validators_hash)?;
        certificate.verify(self.chain_id(), header.height, &header.id(), &validators)?;
        Ok(CheckedCertificate(certificate))
    }

    /// Commits a proposal once `certificate` proves a quorum precommitted it.
    pub fn commit(
        &self,
        proposal: &Proposal,
        certificate: &CommitCertificate,
        durability: Durability,
    ) -> Result<(), ChainError> {
        let header = &proposal.block.header;
        let checked = self.check_certificate(&self.storage, header, certificate.clone())?;
        self.commit_checked(proposal, &checked, durability)
    }

    /// Commits a proposal whose certificate was checked already, as a block fetched from a
    /// peer is on the consensus thread before the catch-up writer commits it.
    pub fn commit_checked(
        &self,
        proposal: &Proposal,
        certificate: &CheckedCertificate,
        durability: Durability,
    ) -> Result<(), ChainError> {
        let header = &proposal.block.header;
        // The certificate names the block it was checked for; a block id covers its height.
        let certificate = &certificate.0;
        let block_id = header.id();
        if certificate.block_id != block_id {
            let cert = certificate.block_id;
            return Err(CertificateError::WrongBlock {
                cert,
                block: block_id,
            }
            .into());
        }
        // A light client follows the set from genesis through the blocks that change it.
        let next_validators = match header.next_validators_hash != header.validators_hash {
            true => state::get_after::<_, ValidatorSet>(
                &self.storage,
                &proposal.executed.changes,
                StateKey::ValidatorSet,
            )?,
            false => None,
        };
        self.storage.commit_block(&BlockCommit {
            block: &proposal.block,
            certificate,
            receipts: &proposal.executed.receipts,
            changes: &proposal.executed.changes,
            state_nodes: &proposal.state.writes,
            next_validators: next_validators.as_ref(),
            durability,
        })?;
        Ok(())
    }
}

/// A commit certificate found good for the block it names ([`Chain::check_certificate`]):
/// what lets [`Chain::commit_checked`] skip checking its signatures again.
#[derive(Debug)]
pub struct CheckedCertificate(CommitCertificate);

/// The validator set that signs the block after `view`'s state.
pub fn validator_set_in<V: StateView + ?Sized>(view: &V) -> Result<ValidatorSet, ChainError> {
    Overlay::new(view)
        .validator_set()?
        .ok_or(ChainError::NoValidatorSet)
}

fn mismatch(field: &'static str, expected: Hash, got: Hash) -> Result<(), ChainError> {
    match expected == got {
        true => Ok(()),
        false => Err(ChainError::HeaderMismatch {
            field,
            expected,
            got,
        }),
    }
}

/// The tx root of a block, from its receipts: there is one per transaction, in block
/// order, holding its hash, so no transaction is encoded and hashed again.
pub fn tx_root(receipts: &[Receipt]) -> Hash {
    let leaves: Vec<Hash> = receipts
        .iter()
        .map(|receipt| block::tx_leaf(&receipt.tx_hash))
        .collect();
    merkle::root(&leaves)
}

/// The receipts root of a block.
pub fn receipts_root(receipts: &[Receipt]) -> Hash {
    let leaves: Vec<Hash> = receipts.iter().map(Receipt::leaf_hash).collect();
    merkle::root(&leaves)
}

#[cfg(test)]
mod tests {
    use bidchain_runtime::crypto::Keypair;
    use bidchain_runtime::tx::Role;

    use crate::testing::{TestChain, create_account_tx, genesis_for};

    use super::*;

    /// A chain of one validator, the hub (seed 1), in `dir`.
    fn hub_chain(dir: &std::path::Path) -> (TestChain, Genesis, Keypair) {
        let genesis = genesis_for(&[1], &[]);
        let hub = Keypair::from_seed_for_tests(1);
        let chain = TestChain::open(dir, genesis.clone(), hub.clone()).unwrap();
        (chain, genesis, hub)
    }

    /// A proposer given one sender's transactions out of nonce order includes them all,
    /// in nonce order; one after a gap stays out.
    #[test]
    fn a_block_takes_one_senders_transactions_in_nonce_order() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, genesis, hub) = hub_chain(dir.path());
        let tx = |nonce| {
            create_account_tx(
                &hub,
                nonce,
                &Keypair::from_seed_for_tests(100 + nonce),
                Role::Bidder,
            )
        };
        let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + 1_000);
        let receipts = chain
            .commit(vec![tx(2), tx(1), tx(5), tx(0)], time)
            .unwrap();
        let nonces: Vec<_> = receipts
            .iter()
            .map(|r| r.tx_hash)
            .map(|h| [tx(0), tx(1), tx(2)].iter().position(|t| t.hash() == h))
            .collect();
        assert_eq!(nonces, vec![Some(0), Some(1), Some(2)]);
    }

    /// The tx root taken from the receipts is the root a receipt's proof checks against
    /// (over the block's transactions), and a block whose header says otherwise is refused.
    #[test]
    fn a_block_whose_tx_root_is_not_its_transactions_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, genesis, hub) = hub_chain(dir.path());
        let txs = (0..3)
            .map(|nonce| {
                let account = Keypair::from_seed_for_tests(100 + nonce);
                create_account_tx(&hub, nonce, &account, Role::Bidder)
            })
            .collect();
        let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + 1_000);
        let proposal = chain.chain.build_proposal(txs, time, hub.public()).unwrap();
        let mut block = proposal.block;
        assert_eq!(block.header.tx_root, merkle::root(&block.tx_leaves()));
        let honest = block.header.tx_root;
        block.header.tx_root = Hash::ZERO;
        let refused = chain
            .chain
            .verify_proposal(block, |_| Vec::new())
            .unwrap_err();
        assert!(
            matches!(
                refused,
                ChainError::HeaderMismatch { field: "tx_root", expected, .. } if expected == honest
            ),
            "{refused}"
        );
    }

    /// A block that this node cannot execute because its own state is unreadable is a
    /// local failure, on which the node stops, not a block to vote against: the other
    /// validators execute it.
    #[test]
    fn a_block_this_node_cannot_execute_is_a_local_failure() {
        let (good, bad) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (proposer, genesis, hub) = hub_chain(good.path());
        let (verifier, _, _) = hub_chain(bad.path());
        let tx = create_account_tx(&hub, 0, &Keypair::from_seed_for_tests(100), Role::Bidder);
        let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + 1_000);
        let proposal = proposer
            .chain
            .build_proposal(vec![tx], time, hub.public())
            .unwrap();
        let block = proposal.block;
        assert!(
            verifier
                .chain
                .verify_proposal(block.clone(), |_| Vec::new())
                .is_ok()
        );
        let sender = StateKey::Account(AccountId::of(&hub.public())).to_bytes();
        verifier
            .chain
            .storage()
            .corrupt_state_for_tests(&sender, b"not an account");
        let failed = verifier
            .chain
            .verify_proposal(block, |_| Vec::new())
            .unwrap_err();
        assert!(
            matches!(failed, ChainError::Exec(ExecError::State(_))),
            "{failed}"
        );
        assert!(failed.is_local(), "{failed}");
    }

    /// A checked certificate commits the block it was checked for and no other, even one
    /// at the same height; nothing is written for the other.
    #[test]
    fn a_checked_certificate_commits_only_its_own_block() {
        let dir = tempfile::tempdir().unwrap();
        let (chain, genesis, hub) = hub_chain(dir.path());
        let at = |ms| {
            let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + ms);
            chain
                .chain
                .build_proposal(vec![], time, hub.public())
                .unwrap()
        };
        let (ours, other) = (at(1_000), at(2_000));
        let set = chain.chain.validator_set().unwrap();
        let certificate = crate::testing::certify(&ours.block.header, &set, &[hub]);
        let storage = chain.chain.storage();
        let checked = chain
            .chain
            .check_certificate(storage, &ours.block.header, certificate)
            .unwrap();

        let refused = chain
            .chain
            .commit_checked(&other, &checked, Durability::Synced)
            .unwrap_err();
        assert!(
            matches!(
                refused,
                ChainError::Certificate(CertificateError::WrongBlock { .. })
            ),
            "{refused}"
        );
        assert_eq!(chain.chain.tip().unwrap().height, Height::GENESIS);
        chain
            .chain
            .commit_checked(&ours, &checked, Durability::Synced)
            .unwrap();
        assert_eq!(chain.chain.tip().unwrap().block_id, ours.block.id());
    }
}
