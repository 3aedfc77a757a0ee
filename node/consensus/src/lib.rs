//! bidchain-consensus, BFT consensus: the Tendermint core (a pure state machine), its messages, and proposer
//! selection. The node's driver and the deterministic simulation both run this same core.

pub mod core;
pub mod proposer;
pub mod sim;
pub mod types;
pub mod votes;

pub use self::core::{Core, CoreConfig, Effect, Faults, Input, Timeouts};
pub use self::types::{
    Message, Proposal, SignedProposal, SignedVote, Step, Timeout, Vote, VoteKind,
};
