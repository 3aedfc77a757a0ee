//! What validators send each other, and the transport seam the consensus driver talks
//! through ([`crate::p2p`] implements it over libp2p).

use std::sync::mpsc::Receiver;

use bidchain_consensus::{SignedProposal, SignedVote};
use bidchain_runtime::block::{Block, CommitCertificate, MAX_BLOCK_BYTES};
use bidchain_runtime::codec::{self, CodecError};
use bidchain_runtime::execute;
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
        /// Boxed: a vote, the common message, stays small.
        block: Box<Block>,
    },
    Vote(SignedVote),
    /// Transactions this validator's clients submitted, batched: one stream and one batch
    /// signature check for many (at most [`MAX_TX_BATCH_BYTES`] encoded).
    Txs(Vec<SignedTransaction>),
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
    /// they arrive in the inbox as [`Inbound::Synced`].
    fn request_blocks(&self, from: ValidatorIndex, height: Height);
}

/// What reaches the driver: peers' messages, and the blocks block sync fetched.
#[derive(Debug)]
pub enum Inbound {
    Net(NetMessage),
    /// Boxed: a block with its certificate is large next to a vote.
    Synced(Box<SyncedBlock>),
}

/// A committed block and its certificate, fetched by block sync for a node that is behind
/// (never accepted unasked from a peer).
#[derive(Debug)]
pub struct SyncedBlock {
    block: Block,
    certificate: CommitCertificate,
    /// Set only by [`SyncedBlock::check`]: every signature in `block` holds, or was
    /// checked by this node before (the fields are private so that the block cannot be
    /// swapped after the check).
    signatures_checked: bool,
}

impl SyncedBlock {
    /// Checks the signature of every transaction not `vouched` for (one batch check) so
    /// the driver need not: the network side does this for the next block while
    /// the driver executes one. A bad signature leaves the block unchecked; the driver's
    /// own check names the transaction.
    pub(crate) fn check(
        block: Block,
        certificate: CommitCertificate,
        vouched: &[bool],
    ) -> SyncedBlock {
        let signatures_checked = execute::verify_signatures(&block.txs, vouched).is_ok();
        SyncedBlock {
            block,
            certificate,
            signatures_checked,
        }
    }

    /// Whether [`SyncedBlock::check`] found every signature good (or checked before).
    pub fn signatures_checked(&self) -> bool {
        self.signatures_checked
    }

    pub fn block(&self) -> &Block {
        &self.block
    }

    pub fn into_parts(self) -> (Block, CommitCertificate) {
        (self.block, self.certificate)
    }
}

/// The driver's inbound queue.
pub type Inbox = Receiver<Inbound>;
