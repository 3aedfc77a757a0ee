//! Client-side checks: a transaction's receipt is in a block that a quorum of the genesis
//! validator set certified. Nothing here trusts the node that answered.

use anyhow::{Result, bail, ensure};
use bidchain_genesis::Genesis;
use bidchain_node::api::{BlockResponse, TxResponse};
use bidchain_runtime::block::tx_leaf;
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::receipt::Receipt;

/// What a verified receipt establishes.
#[derive(Debug)]
pub struct VerifiedReceipt {
    pub receipt: Receipt,
    /// Names of the validators whose signatures certify the block.
    pub signers: Vec<String>,
}

/// Verifies `tx` (as answered by `GET /txs/{hash}`) against `block` (`GET /blocks/{h}`) and
/// the validator set of `genesis`.
pub fn verify_receipt(
    genesis: &Genesis,
    tx: &TxResponse,
    block: &BlockResponse,
) -> Result<VerifiedReceipt> {
    let (Some(height), Some(index), Some(outcome), Some(fuel_used), Some(proof)) = (
        tx.height,
        tx.index,
        tx.result.clone(),
        tx.fuel_used,
        tx.proof.as_ref(),
    ) else {
        bail!("transaction {} is not in a block yet", tx.tx_hash);
    };
    let header = &block.header;
    let block_id = header.id();
    ensure!(
        header.height == height,
        "block is at height {}, the receipt says {height}",
        header.height
    );
    ensure!(
        block_id == proof.block_id,
        "proof is for block {}, not {block_id}",
        proof.block_id
    );
    ensure!(
        header.chain_id == genesis.chain_id,
        "block is of chain {}",
        header.chain_id
    );
    let validators = genesis.validator_set()?;
    ensure!(
        header.validators_hash == validators.hash(),
        "block was signed by a validator set other than genesis's (set changes are not followed yet)"
    );
    let signers = block
        .commit
        .verify(&header.chain_id, height, &block_id, &validators)?;
    ensure!(
        u64::from(index) == proof.tx.index,
        "proof is for index {}, not {index}",
        proof.tx.index
    );
    proof.tx.verify(tx_leaf(&tx.tx_hash), header.tx_root)?;
    let receipt = Receipt {
        tx_hash: tx.tx_hash,
        height,
        index,
        outcome,
        events: BoundedVec::new(tx.events.clone())?,
        fuel_used,
    };
    ensure!(
        u64::from(index) == proof.receipt.index,
        "receipt proof is for another index"
    );
    proof
        .receipt
        .verify(receipt.leaf_hash(), header.receipts_root)?;
    let signers = signers
        .iter()
        .filter_map(|&i| validators.get(i))
        .map(|v| v.name.to_string())
        .collect();
    Ok(VerifiedReceipt { receipt, signers })
}
