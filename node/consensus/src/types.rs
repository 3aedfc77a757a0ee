//! Consensus messages and the bytes validators sign.

use bidchain_runtime::block::{BlockHash, precommit_signing_bytes};
use bidchain_runtime::codec;
use bidchain_runtime::crypto::{Keypair, Signature};
use bidchain_runtime::ids::{ChainId, Height, Round};
use bidchain_runtime::validator::ValidatorSet;
use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// The step of a round (paper: `step_p`). Ordered: propose < prevote < precommit.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Encode, Decode, Serialize, Deserialize,
)]
pub enum Step {
    Propose,
    Prevote,
    Precommit,
}

#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash, Encode, Decode, Serialize, Deserialize,
)]
pub enum VoteKind {
    Prevote,
    Precommit,
}

/// A prevote or precommit; `block_id: None` is a vote for nil.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Vote {
    pub kind: VoteKind,
    pub height: Height,
    pub round: Round,
    pub block_id: Option<BlockHash>,
    pub validator_index: u16,
}

impl Vote {
    /// A precommit for a block signs exactly the bytes a commit certificate checks, so the
    /// certificate is the collected precommits themselves.
    pub fn signing_bytes(&self, chain_id: &ChainId) -> Vec<u8> {
        match (self.kind, &self.block_id) {
            (VoteKind::Precommit, Some(id)) => {
                precommit_signing_bytes(chain_id, self.height, self.round, id)
            }
            _ => {
                let mut bytes = b"bidchain/vote/v1\0".to_vec();
                let body = (chain_id, self.kind, self.height, self.round, &self.block_id);
                bytes.extend(codec::encode(&body));
                bytes
            }
        }
    }
}

/// A proposal of a block for (height, round). `valid_round` is the paper's `validRound_p`
/// of the proposer (`None` for −1).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub block_id: BlockHash,
    pub valid_round: Option<Round>,
    pub proposer_index: u16,
}

impl Proposal {
    pub fn signing_bytes(&self, chain_id: &ChainId) -> Vec<u8> {
        let mut bytes = b"bidchain/proposal/v1\0".to_vec();
        bytes.extend(codec::encode(&(chain_id, self)));
        bytes
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub signature: Signature,
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct SignedProposal {
    pub proposal: Proposal,
    pub signature: Signature,
}

/// What validators exchange.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub enum Message {
    Proposal(SignedProposal),
    Vote(SignedVote),
}

impl Message {
    pub fn height(&self) -> Height {
        match self {
            Message::Proposal(p) => p.proposal.height,
            Message::Vote(v) => v.vote.height,
        }
    }

    pub fn round(&self) -> Round {
        match self {
            Message::Proposal(p) => p.proposal.round,
            Message::Vote(v) => v.vote.round,
        }
    }

    pub fn sender(&self) -> u16 {
        match self {
            Message::Proposal(p) => p.proposal.proposer_index,
            Message::Vote(v) => v.vote.validator_index,
        }
    }

    /// Checks the signature against the sender's key in `validators`.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        validators: &ValidatorSet,
    ) -> Result<(), MessageError> {
        let index = self.sender();
        let validator = validators
            .get(usize::from(index))
            .ok_or(MessageError::UnknownSender(index))?;
        let (bytes, signature) = match self {
            Message::Proposal(p) => (p.proposal.signing_bytes(chain_id), &p.signature),
            Message::Vote(v) => (v.vote.signing_bytes(chain_id), &v.signature),
        };
        validator
            .key
            .verify(&bytes, signature)
            .map_err(|_| MessageError::BadSignature(index))
    }
}

/// Why a consensus message was dropped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("sender index {0} is not a validator")]
    UnknownSender(u16),
    #[error("signature of validator {0} does not verify")]
    BadSignature(u16),
}

pub fn sign_vote(vote: Vote, chain_id: &ChainId, key: &Keypair) -> SignedVote {
    let signature = key.sign(&vote.signing_bytes(chain_id));
    SignedVote { vote, signature }
}

pub fn sign_proposal(proposal: Proposal, chain_id: &ChainId, key: &Keypair) -> SignedProposal {
    let signature = key.sign(&proposal.signing_bytes(chain_id));
    SignedProposal {
        proposal,
        signature,
    }
}

/// A timer the core asked for; it comes back as an input when it fires.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub struct Timeout {
    pub height: Height,
    pub round: Round,
    pub step: Step,
}
