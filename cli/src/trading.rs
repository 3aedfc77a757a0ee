//! Client side of the trading contracts: turning what a person has (names, files, a key)
//! into the pseudonymous ids, fingerprints, commitments and calls the contracts take, and
//! reading contract records back. Used by the `bidchain` commands, the demo, tests and
//! benchmarks alike.

use anyhow::{Context, Result};
use bidchain_runtime::crypto::{Keypair, PublicKey};
use bidchain_runtime::ids::{ChainId, Nonce};
use bidchain_runtime::tx::{Payload, SignedTransaction, Transaction};
use bidchain_trading::tender::{Fingerprints, SealedBid, commitment_preimage};
use bidchain_trading::{AccountKey, Digest, Encode, ExpertId, TenderId, UnitId};
use sha2::{Digest as _, Sha256};

pub use bidchain_trading::contract_names;

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}

/// A unit (company, agency) by its unified social credit code or name: only its hash goes
/// on chain.
pub fn unit_id(name: &str) -> UnitId {
    UnitId(sha256(name.as_bytes()).0)
}

/// An expert by the expert library's own id: only its hash goes on chain.
pub fn expert_id(name: &str) -> ExpertId {
    ExpertId(sha256(name.as_bytes()).0)
}

pub fn account_key(key: &PublicKey) -> AccountKey {
    AccountKey(key.0)
}

/// The maker fingerprints as read from a bid file's metadata, each hashed.
pub fn fingerprints(
    machine_code: &str,
    file_creation_id: &str,
    dongle_serial: &str,
    hardware: &str,
) -> Fingerprints {
    Fingerprints {
        machine_code: sha256(machine_code.as_bytes()),
        file_creation_id: sha256(file_creation_id.as_bytes()),
        dongle_serial: sha256(dongle_serial.as_bytes()),
        hardware: sha256(hardware.as_bytes()),
    }
}

/// The salt of a bid's commitment, derived from the bidder's key (ed25519 signatures are
/// deterministic), so the bidder can reveal with nothing kept but its key and its file,
/// and nobody else can guess it.
pub fn bid_salt(key: &Keypair, tender: &TenderId, file_hash: &Digest) -> Digest {
    let mut message = b"bidchain/bid-salt/v1\0".to_vec();
    message.extend(tender.encode());
    message.extend_from_slice(&file_hash.0);
    sha256(&key.sign(&message).0)
}

/// A sealed bid for the plaintext file with hash `file_hash`, encrypted to a file with
/// hash `cipher_hash`.
pub fn sealed_bid(
    key: &Keypair,
    tender: &TenderId,
    file_hash: &Digest,
    cipher_hash: Digest,
    fingerprints: Fingerprints,
) -> SealedBid {
    let salt = bid_salt(key, tender, file_hash);
    let bidder = account_key(&key.public());
    SealedBid {
        cipher_hash,
        commitment: sha256(&commitment_preimage(&bidder, file_hash, &salt)),
        fingerprints,
    }
}

/// A transaction calling `contract` with `call`, signed by `key`.
pub fn call_tx<C: Encode>(
    chain_id: &ChainId,
    key: &Keypair,
    nonce: Nonce,
    contract: &str,
    call: &C,
) -> Result<SignedTransaction> {
    let payload = Payload::call(contract, call.encode()).context("contract call too large")?;
    Ok(Transaction {
        chain_id: chain_id.clone(),
        sender: key.public(),
        nonce,
        payload,
    }
    .sign(key))
}
