//! The HTTP API's JSON bodies, shared by the server and by clients (the CLI, tests).

use bidchain_runtime::block::{BlockHash, CommitCertificate, Header};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::crypto::PublicKey;
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::{AccountId, Height, Nonce};
use bidchain_runtime::receipt::{Event, TxOutcome};
use bidchain_runtime::time::Timestamp;
use bidchain_runtime::tx::{Role, SignedTransaction, TxHash};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    pub chain_id: String,
    pub node_name: String,
    /// `validator` or `observer`.
    pub role: String,
    pub height: Height,
    pub latest_block_hash: BlockHash,
    pub latest_block_time: Timestamp,
    pub peers: u64,
    pub genesis_hash: Hash,
    pub mempool_txs: usize,
}

/// `GET /contracts/{name}/state/{key}`: the raw value (hex) at the tip `height`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ContractStateResponse {
    pub contract: String,
    pub height: Height,
    pub value: Option<String>,
}

/// The immediate receipt of admission (确认回执) for `POST /txs`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    pub tx_hash: TxHash,
    pub status: TxStatus,
}

/// `POST /txs/batch`'s body: the canonical encoding of this list. A gateway forwarding many
/// bidders' submissions pays one request and one batch signature check for all of them.
pub type SubmitBatch = BoundedVec<SignedTransaction, MAX_SUBMIT_BATCH_TXS>;
pub const MAX_SUBMIT_BATCH_TXS: usize = 1_024;
pub const MAX_SUBMIT_BATCH_BYTES: usize = 1024 * 1024;

/// `POST /txs/batch`'s answer: one item per transaction, in the batch's order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubmitBatchResponse {
    pub results: Vec<BatchItem>,
}

/// A batch submission's answer for one transaction: admitted (`status: pending`, the
/// receipt of admission) or refused (`refused`, with the code `POST /txs` would give).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchItem {
    pub tx_hash: TxHash,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<TxStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<ErrorResponse>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub error: String,
    pub code: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxStatus {
    /// Admitted to the mempool, not yet in a block.
    Pending,
    /// In a block, and the rules accepted it.
    Committed,
    /// In a block, and the rules refused it (the result says why).
    Rejected,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TxResponse {
    pub tx_hash: TxHash,
    pub status: TxStatus,
    pub height: Option<Height>,
    pub index: Option<u32>,
    pub result: Option<TxOutcome>,
    pub events: Vec<Event>,
    pub fuel_used: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockResponse {
    pub block_id: BlockHash,
    pub header: Header,
    pub tx_hashes: Vec<TxHash>,
    pub commit: CommitCertificate,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AccountResponse {
    pub account_id: AccountId,
    pub public_key: PublicKey,
    pub role: Role,
    pub label: String,
    /// The committed nonce.
    pub nonce: Nonce,
    /// The nonce the next transaction must carry, counting pending ones.
    pub next_nonce: Nonce,
}
