//! Proof bundles built from storage (`bidchain_runtime::proof` says what they prove and
//! checks them). A bundle is anchored at a committed block with its certificate, and
//! carries every validator-set change before it.

use bidchain_runtime::block::{self, CommitCertificate};
use bidchain_runtime::bounded::{BoundedBytes, BoundedVec};
use bidchain_runtime::ids::Height;
use bidchain_runtime::merkle;
use bidchain_runtime::proof::{
    Bundle, Claim, MAX_BUNDLE_ENTRIES, SetChange, SignedHeader, StateEntry,
};
use bidchain_runtime::tx::TxHash;

use crate::chain::Chain;
use crate::storage::{Commits, Headers, StateSnapshot, StorageError};

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("transaction {0} is not committed")]
    TxNotCommitted(TxHash),
    #[error("no block at height {0}")]
    NoSuchBlock(Height),
    #[error("no block is committed yet, so there is no header to prove against")]
    NoBlock,
    #[error("a bundle proves at most {MAX_BUNDLE_ENTRIES} entries, not {0}")]
    TooManyEntries(usize),
    #[error("state entry {0} is too large for a bundle")]
    EntryTooLarge(String),
    #[error("stored chain is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// The bundle proving a committed transaction's receipt, anchored at its block.
pub fn receipt_bundle(chain: &Chain, hash: TxHash) -> Result<Bundle, ProofError> {
    let storage = chain.storage();
    let location = storage
        .receipt(&hash)?
        .ok_or(ProofError::TxNotCommitted(hash))?;
    let block = storage
        .block(location.height)?
        .ok_or(ProofError::Inconsistent(
            "a receipt points at a missing block",
        ))?;
    let mut receipts = Vec::with_capacity(block.txs.len());
    for stx in block.txs.iter() {
        let receipt = storage.receipt(&stx.hash())?;
        receipts.push(receipt.ok_or(ProofError::Inconsistent("block tx without receipt"))?);
    }
    let index = location.index as usize;
    let receipt = receipts
        .get(index)
        .cloned()
        .ok_or(ProofError::Inconsistent("tx index past the block's end"))?;
    let leaves: Vec<_> = receipts.iter().map(|r| r.leaf_hash()).collect();
    let inconsistent = |_| ProofError::Inconsistent("tx index past the block's end");
    let claim = Claim::Receipt {
        receipt,
        tx_proof: merkle::prove(&block::tx_leaves(&block.txs), index).map_err(inconsistent)?,
        receipt_proof: merkle::prove(&leaves, index).map_err(inconsistent)?,
    };
    anchored(chain, location.height, claim)
}

/// The bundle proving the random seed of the block at `height`.
pub fn seed_bundle(chain: &Chain, height: Height) -> Result<Bundle, ProofError> {
    let block = chain
        .storage()
        .block(height)?
        .ok_or(ProofError::NoSuchBlock(height))?;
    let claim = Claim::Seed {
        last_commit: block.last_commit,
    };
    anchored(chain, height, claim)
}

/// How many times [`state_bundle`] starts over when a block is committed between its
/// snapshot and its proofs (which are read at once, [`StateSnapshot::prove_all`]).
const MAX_STATE_BUNDLE_ATTEMPTS: usize = 4;

/// The bundle proving the values of state `keys` (present or absent) after the latest
/// committed block, and of the first present keys under `listed` (so a checker can tell
/// "recorded with another hash" from "not recorded"), as many as the bundle bound leaves.
pub fn state_bundle(
    chain: &Chain,
    keys: &[Vec<u8>],
    listed: Option<&[u8]>,
) -> Result<Bundle, ProofError> {
    let mut attempt = 1;
    loop {
        match state_bundle_once(chain, keys, listed) {
            Err(ProofError::Storage(StorageError::StateMoved { .. }))
                if attempt < MAX_STATE_BUNDLE_ATTEMPTS =>
            {
                attempt += 1;
            }
            done => return done,
        }
    }
}

fn state_bundle_once(
    chain: &Chain,
    keys: &[Vec<u8>],
    listed: Option<&[u8]>,
) -> Result<Bundle, ProofError> {
    let snapshot = chain.storage().snapshot();
    let height = snapshot.height();
    if height == Height::GENESIS {
        return Err(ProofError::NoBlock);
    }
    let mut keys = keys.to_vec();
    if let Some(prefix) = listed {
        let room = MAX_BUNDLE_ENTRIES.saturating_sub(keys.len());
        for key in snapshot.keys_with_prefix(prefix, room + keys.len())? {
            if !keys.contains(&key) && keys.len() < MAX_BUNDLE_ENTRIES {
                keys.push(key);
            }
        }
    }
    let entries = prove_entries(&snapshot, &keys)?;
    anchored(chain, height, Claim::State { entries })
}

fn prove_entries(
    snapshot: &StateSnapshot<'_>,
    keys: &[Vec<u8>],
) -> Result<BoundedVec<StateEntry, MAX_BUNDLE_ENTRIES>, ProofError> {
    // Before the proofs, which hold back commits while they are read.
    if keys.len() > MAX_BUNDLE_ENTRIES {
        return Err(ProofError::TooManyEntries(keys.len()));
    }
    let too_large = |key: &[u8]| ProofError::EntryTooLarge(hex::encode(key));
    let mut entries = Vec::with_capacity(keys.len());
    for (key, (value, proof)) in keys.iter().zip(snapshot.prove_all(keys)?) {
        let value = value
            .map(BoundedBytes::new)
            .transpose()
            .map_err(|_| too_large(key))?;
        let key = BoundedBytes::new(key.clone()).map_err(|_| too_large(key))?;
        entries.push(StateEntry { key, value, proof });
    }
    BoundedVec::new(entries).map_err(|e| ProofError::TooManyEntries(e.len))
}

/// `claim` with the signed header at `height` and the validator-set path to it.
fn anchored(chain: &Chain, height: Height, claim: Claim) -> Result<Bundle, ProofError> {
    let storage = chain.storage();
    let mut set_changes = Vec::new();
    for (at, next_set) in storage.set_changes_until(Height(height.0.saturating_sub(1)))? {
        set_changes.push(SetChange {
            signed: signed_header(chain, at)?,
            next_set,
        });
    }
    Ok(Bundle {
        chain_id: chain.chain_id().clone(),
        genesis_hash: chain.genesis().hash(),
        set_changes: BoundedVec::new(set_changes).map_err(|_| {
            ProofError::Inconsistent("more validator-set changes than a bundle holds")
        })?,
        anchor: signed_header(chain, height)?,
        claim,
    })
}

fn signed_header(chain: &Chain, height: Height) -> Result<SignedHeader, ProofError> {
    let storage = chain.storage();
    let header = storage
        .get::<Headers>(&height)?
        .ok_or(ProofError::Inconsistent("missing header"))?;
    let certificate: CommitCertificate = storage
        .get::<Commits>(&height)?
        .ok_or(ProofError::Inconsistent("missing certificate"))?;
    Ok(SignedHeader {
        header,
        certificate,
    })
}
