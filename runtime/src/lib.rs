//! bidchain-runtime: the ledger's primitives and its deterministic state machine.
//!
//! Everything that is hashed, signed, stored or sent goes through [`codec`]: one canonical
//! encoding (bincode 2, fixed-width little-endian integers, bounded lengths, no trailing
//! bytes). "Runtime" means the contract/execution runtime, as in Substrate, not an async
//! executor: nothing here does I/O or reads a clock.

pub mod block;
pub mod bounded;
pub mod codec;
pub mod contract;
pub mod crypto;
pub mod execute;
pub mod hash;
pub mod ids;
pub mod merkle;
pub mod proof;
pub mod receipt;
pub mod smt;
pub mod state;
pub mod time;
pub mod tx;
pub mod validator;

pub use block::{Block, BlockHash, CommitCertificate, CommitSig, Header};
pub use bounded::{BoundedBytes, BoundedString, BoundedVec};
pub use codec::CodecError;
pub use crypto::{Keypair, PublicKey, Signature};
pub use hash::Hash;
pub use ids::{AccountId, ChainId, Height, Nonce, Round};
pub use receipt::{Receipt, TxOutcome};
pub use time::Timestamp;
pub use tx::{NativeCall, Payload, Role, SignedTransaction, Transaction, TxHash};
pub use validator::{Validator, ValidatorSet};
