//! What validators send each other, and the transport seam the consensus driver talks
//! through. The in-process transport here connects nodes that share one process (tests,
//! and any embedding); the libp2p network replaces it between processes.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

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
    Tx(SignedTransaction),
    /// "I have committed up to `height` - 1 and see others past it": peers answer with
    /// the committed blocks from `height` on.
    Behind {
        validator: ValidatorIndex,
        height: Height,
    },
    /// A committed block and its certificate, sent to a validator that is behind.
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
    fn broadcast(&self, message: NetMessage);
    fn send(&self, to: ValidatorIndex, message: NetMessage);
}

/// The driver's inbound queue.
pub type Inbox = Receiver<NetMessage>;

/// A node with no peers: a one-validator chain, or a node whose network is not up.
#[derive(Debug, Default)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn broadcast(&self, _message: NetMessage) {}
    fn send(&self, _to: ValidatorIndex, _message: NetMessage) {}
}

/// In-process links between nodes, indexed like the validator set. A node can be taken
/// off the network and put back with a fresh inbox (a restart).
#[derive(Clone, Debug)]
pub struct InProcessNetwork {
    inboxes: Arc<Mutex<Vec<Option<SyncSender<NetMessage>>>>>,
}

impl InProcessNetwork {
    pub fn new(nodes: usize) -> InProcessNetwork {
        InProcessNetwork {
            inboxes: Arc::new(Mutex::new(vec![None; nodes])),
        }
    }

    /// Connects node `index`, replacing any earlier inbox of it.
    pub fn join(&self, index: ValidatorIndex) -> (InProcessTransport, Inbox) {
        let (sender, inbox) = sync_channel(INBOX_CAPACITY);
        if let Some(slot) = self.lock().get_mut(usize::from(index)) {
            *slot = Some(sender);
        }
        let transport = InProcessTransport {
            me: index,
            network: self.clone(),
        };
        (transport, inbox)
    }

    /// Disconnects node `index`: what is sent to it is lost.
    pub fn leave(&self, index: ValidatorIndex) {
        if let Some(slot) = self.lock().get_mut(usize::from(index)) {
            *slot = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<SyncSender<NetMessage>>>> {
        self.inboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn deliver(&self, to: usize, message: NetMessage) {
        let sender = self.lock().get(to).cloned().flatten();
        if let Some(sender) = sender {
            match sender.try_send(message) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(_)) => {
                    tracing::debug!(to, "peer inbox full; message dropped");
                }
            }
        }
    }
}

#[derive(Debug)]
pub struct InProcessTransport {
    me: ValidatorIndex,
    network: InProcessNetwork,
}

impl Transport for InProcessTransport {
    fn broadcast(&self, message: NetMessage) {
        let n = self.network.lock().len();
        for to in (0..n).filter(|&i| i != usize::from(self.me)) {
            self.network.deliver(to, message.clone());
        }
    }

    fn send(&self, to: ValidatorIndex, message: NetMessage) {
        if to != self.me {
            self.network.deliver(usize::from(to), message);
        }
    }
}
