//! Builders for tests and simulations: deterministic keys, genesis files and transactions.
//! Never used by a running node.

use std::path::Path;

use bidchain_genesis::{ConsensusParams, Genesis, GenesisAccount, GenesisValidator};
use bidchain_runtime::block::{CommitCertificate, CommitSig, Header, precommit_signing_bytes};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::ids::Round;
use bidchain_runtime::receipt::Receipt;
use bidchain_runtime::validator::ValidatorSet;

use crate::chain::{Chain, ChainError};
use crate::node::NodeError;
use crate::storage::{Durability, Storage};
use bidchain_runtime::bounded::BoundedString;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{ChainId, Nonce};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{NativeCall, Payload, Role, SignedTransaction, Transaction};

pub const TEST_CHAIN_ID: &str = "bidchain-test";
/// 2026-01-01T00:00:00Z.
pub const TEST_GENESIS_MS: u64 = 1_767_225_600_000;

fn label(text: String) -> BoundedString<64> {
    BoundedString::truncating(&text)
}

/// A genesis with one hub validator per seed in `validators` (named `v<seed>`) and one
/// bidder account per seed in `accounts`.
pub fn genesis_for(validators: &[u64], accounts: &[u64]) -> Genesis {
    Genesis {
        chain_id: chain_id(),
        genesis_time: Timestamp(TEST_GENESIS_MS),
        consensus: ConsensusParams {
            block_interval_ms: 50,
            ..ConsensusParams::default()
        },
        validators: validators
            .iter()
            .map(|&seed| GenesisValidator {
                name: label(format!("v{seed}")),
                role: Role::Hub,
                public_key: Keypair::from_seed_for_tests(seed).public(),
                p2p_address: BoundedString::truncating(&format!(
                    "/ip4/127.0.0.1/tcp/{}",
                    30000 + seed
                )),
                power: 1,
            })
            .collect(),
        accounts: accounts
            .iter()
            .map(|&seed| GenesisAccount {
                label: label(format!("a{seed}")),
                role: Role::Bidder,
                public_key: Keypair::from_seed_for_tests(seed).public(),
            })
            .collect(),
        contracts: bidchain_genesis::contracts::bundled_pins(),
    }
}

pub fn chain_id() -> ChainId {
    ChainId::new(TEST_CHAIN_ID).unwrap_or_else(|_| unreachable!("constant chain id is valid"))
}

/// `signer` creates an account for `new` with `role`.
pub fn create_account_tx(
    signer: &Keypair,
    nonce: u64,
    new: &Keypair,
    role: Role,
) -> SignedTransaction {
    create_account_tx_on(&chain_id(), signer, Nonce(nonce), new, role)
}

/// [`create_account_tx`] on the chain `chain_id`.
pub fn create_account_tx_on(
    chain_id: &ChainId,
    signer: &Keypair,
    nonce: Nonce,
    new: &Keypair,
    role: Role,
) -> SignedTransaction {
    Transaction {
        chain_id: chain_id.clone(),
        sender: signer.public(),
        nonce,
        payload: Payload::Native(NativeCall::CreateAccount {
            key: new.public(),
            role,
            label: label(format!("acct-{}", nonce.0)),
        }),
    }
    .sign(signer)
}

/// The round-0 commit certificate of `header`, signed by every member of `set` whose key
/// is in `keys`.
pub fn certify(header: &Header, set: &ValidatorSet, keys: &[Keypair]) -> CommitCertificate {
    let signing = precommit_signing_bytes(&header.chain_id, header.height, Round(0), &header.id());
    let signatures = set
        .validators()
        .iter()
        .enumerate()
        .filter_map(|(index, v)| {
            let key = keys.iter().find(|k| k.public() == v.key)?;
            Some(CommitSig {
                validator_index: u16::try_from(index).ok()?,
                signature: key.sign(&signing),
            })
        })
        .collect();
    CommitCertificate {
        height: header.height,
        round: Round(0),
        block_id: header.id(),
        signatures: BoundedVec::new(signatures).unwrap_or_default(),
    }
}

/// A one-validator chain on RocksDB that commits blocks at chosen times without a network:
/// execution and storage exactly as a node runs them, for tests and benchmarks of the rules.
#[derive(Debug)]
pub struct TestChain {
    pub chain: Chain,
    /// Keys of validators this chain signs for: every one in the current set certifies.
    validators: Vec<Keypair>,
}

impl TestChain {
    /// `genesis` must have `validator` as its only validator.
    pub fn open(dir: &Path, genesis: Genesis, validator: Keypair) -> Result<TestChain, NodeError> {
        let storage = Storage::open(dir, &genesis)?;
        let contracts = genesis.contracts()?;
        Ok(TestChain {
            chain: Chain::new(storage, genesis, contracts),
            validators: vec![validator],
        })
    }

    /// Signs with `key` too whenever it is in the validator set (after a set change).
    pub fn add_validator_key(&mut self, key: Keypair) {
        self.validators.push(key);
    }

    /// Builds, certifies and commits one block of `txs` at `time`; returns its receipts.
    /// Transactions that are invalid (wrong nonce) are left out, as a proposer would.
    pub fn commit(
        &self,
        txs: Vec<SignedTransaction>,
        time: Timestamp,
    ) -> Result<Vec<Receipt>, ChainError> {
        let proposer = self.validators.first().map(Keypair::public);
        let proposer = proposer.ok_or(ChainError::NoValidatorSet)?;
        let proposal = self.chain.build_proposal(txs, time, proposer)?;
        let set = self.chain.validator_set()?;
        let certificate = certify(&proposal.block.header, &set, &self.validators);
        self.chain
            .commit(&proposal, &certificate, Durability::Synced)?;
        Ok(proposal.executed.receipts)
    }
}
