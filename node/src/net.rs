//! What validators send each other, and the transport seam the consensus driver talks
//! through ([`crate::p2p`] implements it over libp2p).

use std::sync::mpsc::Receiver;

use bidchain_consensus::{SignedProposal, SignedVote};
use bidchain_runtime::block::{Block, CommitCertificate, MAX_BLOCK_BYTES};
use bidchain_runtime::codec::{self, CodecError};
use bidchain_runtime::ids::Height;
use bidchain_runtime::tx::SignedTransaction;
use bincode::{Decode, Encode};

/// Messages queued for the driver; beyond this, new messages are dropped (consensus
/// tolerates loss: every node re-gossips what it holds).
pub const INBOX_CAPACITY: usize = 4_096;
/// The largest message on the wire: a block with its proposal or certificate.
pub const MAX_NET_MESSAGE_BYTES: usize = MAX_BLOCK_BYTES + 64 * 1024;

/// The encoded size at which a batch of gossiped transactions is sent.
pub const MAX_TX_BATCH_BYTES: usize = 1024 * 1024;

/// A validator's position in the validator set, as consensus messages name it.
pub type ValidatorIndex = u16;

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum NetMessage {
    /// A proposal travels with its block, so a vote never waits on a second fetch.
    Proposal {
        proposal: SignedProposal,
        block: Block,
    },
    Vote(SignedVote),
    /// Transactions this validator's clients submitted, batched: one stream and one batch
    /// signature check for many (at most [`MAX_TX_BATCH_BYTES`] encoded).
    Txs(Vec<SignedTransaction>),
    /// A committed block and its certificate, fetched by block sync for a node that is
    /// behind (never accepted unasked from a peer).
    Committed {
        block: Block,
        certificate: CommitCertificate,
    },
}

impl NetMessage {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a message from a peer; oversized or malformed bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<NetMessage, CodecError> {
        codec::decode_bounded(bytes, MAX_NET_MESSAGE_BYTES)
    }
}

/// Where the driver sends. Sending never blocks and may lose the message.
pub trait Transport: Send {
    /// To every connected peer.
    fn broadcast(&self, message: NetMessage);
    /// Fetches the committed blocks from `height` on from validator `from`, who is ahead;
    /// they arrive in the inbox as [`NetMessage::Committed`].
    fn request_blocks(&self, from: ValidatorIndex, height: Height);
}

/// The driver's inbound queue.
pub type Inbox = Receiver<NetMessage>;
