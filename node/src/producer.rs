//! Block production for a validator set in which this node alone holds a quorum (n = 1).
//!
//! It drives the same [`Chain`] interface a multi-validator consensus engine drives:
//! reap → `build_proposal` → a precommit signature → `commit` with the certificate. The BFT
//! engine replaces this loop, not the chain underneath it.

use std::sync::Arc;

use bidchain_runtime::block::{CommitCertificate, CommitSig, precommit_signing_bytes};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::crypto::Keypair;
use bidchain_runtime::ids::{Height, Round};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::TxHash;

use crate::chain::{Chain, ChainError, Proposal};
use crate::shared::Shared;

/// Why this node cannot produce blocks alone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SoloError {
    #[error("this node's key is not in the validator set")]
    NotValidator,
    #[error("this node holds {own} of {total} voting power; committing alone needs {quorum}")]
    NoQuorum { own: u64, total: u64, quorum: u64 },
}

/// The single-validator producer.
#[derive(Debug)]
pub struct SoloProducer {
    key: Keypair,
    index: u16,
    shared: Arc<Shared>,
}

impl SoloProducer {
    /// Refuses unless this node's power alone is a quorum of the current set.
    pub fn new(key: Keypair, shared: Arc<Shared>) -> Result<SoloProducer, ChainError> {
        let set = shared.chain.validator_set()?;
        let Some(index) = set.index_of(&key.public()) else {
            return Err(ChainError::Solo(SoloError::NotValidator));
        };
        let own = set.get(index).map_or(0, |v| v.power);
        if own < set.quorum_power() {
            let (total, quorum) = (set.total_power(), set.quorum_power());
            return Err(ChainError::Solo(SoloError::NoQuorum { own, total, quorum }));
        }
        // Validator sets are bounded by MAX_VALIDATORS (128), so the index fits.
        let index = u16::try_from(index).unwrap_or(u16::MAX);
        Ok(SoloProducer { key, index, shared })
    }

    /// Produces one block if there are pending transactions or `force` is set. Returns the
    /// committed height.
    pub fn produce_once(&self, now: Timestamp, force: bool) -> Result<Option<Height>, ChainError> {
        let chain: &Chain = &self.shared.chain;
        let params = &chain.genesis().consensus;
        let candidates = self.shared.mempool().reap(
            params.max_block_txs as usize,
            params.max_block_bytes as usize - HEADER_ALLOWANCE_BYTES,
        );
        if candidates.is_empty() && !force {
            return Ok(None);
        }
        let tip = chain.tip()?;
        // Block time strictly increases even if this clock stepped back.
        let time = now.max(tip.time.saturating_add_millis(1));
        let proposal = chain.build_proposal(candidates, time, self.key.public())?;
        let certificate = self.certify(&proposal);
        chain.commit(&proposal, &certificate)?;
        let hashes: Vec<TxHash> = proposal
            .executed
            .receipts
            .iter()
            .map(|r| r.tx_hash)
            .collect();
        self.shared.after_commit(&proposal.block, &hashes);
        Ok(Some(proposal.block.header.height))
    }

    fn certify(&self, proposal: &Proposal) -> CommitCertificate {
        let header = &proposal.block.header;
        let round = Round(0);
        let message = precommit_signing_bytes(&header.chain_id, header.height, round, &header.id());
        let sig = CommitSig {
            validator_index: self.index,
            signature: self.key.sign(&message),
        };
        CommitCertificate {
            height: header.height,
            round,
            block_id: header.id(),
            signatures: BoundedVec::new(vec![sig]).unwrap_or_default(),
        }
    }
}

/// Room left in a block for its header and length prefixes.
const HEADER_ALLOWANCE_BYTES: usize = 4 * 1024;
