//! Proof bundles: a record together with everything needed to check it offline, from the
//! genesis file alone, trusting no node.
//!
//! A bundle holds the claim (a receipt, or state entries present or proven absent), its
//! Merkle proofs, the header they lead to with its commit certificate (the anchor), and
//! every block between genesis and the anchor that changed the validator set, each with
//! its certificate and the set it installed. A checker starts from the genesis set and
//! follows the changes: each one must be certified by the set in force before it, and the
//! anchor by the set in force at its height.
//!
//! The encoding is the canonical codec with a version byte in front, so the bytes are the
//! same whether served over HTTP or written to a file.

use bincode::{Decode, Encode};

use crate::block::{self, CertificateError, CommitCertificate, Header, tx_leaf};
use crate::bounded::{BoundedBytes, BoundedVec};
use crate::codec::{self, CodecError};
use crate::execute;
use crate::hash::Hash;
use crate::ids::{ChainId, Height};
use crate::merkle::{MerkleError, MerkleProof};
use crate::receipt::Receipt;
use crate::smt::{SmtError, StateProof};
use crate::time::Timestamp;
use crate::validator::ValidatorSet;

/// The bundle format this code writes and reads.
pub const BUNDLE_VERSION: u8 = 1;
/// Most validator-set changes a bundle may carry between genesis and its anchor.
pub const MAX_SET_CHANGES: usize = 1024;
/// Most state entries one bundle proves.
pub const MAX_BUNDLE_ENTRIES: usize = 64;
/// Largest state key and value a bundle carries.
pub const MAX_ENTRY_KEY_BYTES: usize = 1024;
pub const MAX_ENTRY_VALUE_BYTES: usize = 64 * 1024;
/// Largest encoded bundle.
pub const MAX_BUNDLE_BYTES: usize = 16 * 1024 * 1024;

/// A header with the certificate that commits it.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct SignedHeader {
    pub header: Header,
    pub certificate: CommitCertificate,
}

/// A block that changed the validator set, and the set it installed for the next height.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct SetChange {
    pub signed: SignedHeader,
    pub next_set: ValidatorSet,
}

/// One state entry and its proof: `value` none means the proof shows the key is absent.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct StateEntry {
    pub key: BoundedBytes<MAX_ENTRY_KEY_BYTES>,
    pub value: Option<BoundedBytes<MAX_ENTRY_VALUE_BYTES>>,
    pub proof: StateProof,
}

/// What a bundle proves about its anchor block.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub enum Claim {
    /// The anchor block holds this transaction, and this is its receipt.
    Receipt {
        receipt: Receipt,
        tx_proof: MerkleProof,
        receipt_proof: MerkleProof,
    },
    /// The state after the anchor block holds these entries (or lacks them).
    State {
        entries: BoundedVec<StateEntry, MAX_BUNDLE_ENTRIES>,
    },
    /// The anchor block's random seed (`execute::block_seed`): the certificate of the
    /// block before it, which the header commits to.
    Seed {
        last_commit: Option<CommitCertificate>,
    },
}

/// A claim with its proofs, anchor and validator-set path from genesis.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct Bundle {
    pub chain_id: ChainId,
    pub genesis_hash: Hash,
    pub set_changes: BoundedVec<SetChange, MAX_SET_CHANGES>,
    pub anchor: SignedHeader,
    pub claim: Claim,
}

/// What a checker trusts: the genesis file's chain, hash and validator set.
#[derive(Clone, Debug)]
pub struct Trust {
    pub chain_id: ChainId,
    pub genesis_hash: Hash,
    pub validators: ValidatorSet,
}

/// A validator that signed the anchor's certificate.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Signer {
    pub name: String,
    pub power: u64,
}

/// What a bundle establishes once checked.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Verified {
    pub height: Height,
    pub time: Timestamp,
    pub block_id: Hash,
    pub signers: Vec<Signer>,
    /// Validator-set changes followed from genesis.
    pub set_changes: usize,
}

/// Why a bundle does not hold. Each tampering has its own reason.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("not a bundle: {0}")]
    Malformed(CodecError),
    #[error("bundle format version {0} is not supported (this client reads {BUNDLE_VERSION})")]
    UnsupportedVersion(u8),
    #[error(
        "bundle is for chain {got} (genesis {got_hash}), not {expected} (genesis {expected_hash})"
    )]
    WrongChain {
        expected: ChainId,
        expected_hash: Hash,
        got: ChainId,
        got_hash: Hash,
    },
    #[error(
        "unknown validator set: the header at height {height} names set {named}, but the set genesis leads to there is {reached}"
    )]
    UnknownValidatorSet {
        height: Height,
        named: Hash,
        reached: Hash,
    },
    #[error("bad signature: the certificate of height {height} does not hold: {source}")]
    BadCertificate {
        height: Height,
        source: CertificateError,
    },
    #[error("validator-set change at height {height} is out of order or beyond the anchor")]
    ChangeOutOfOrder { height: Height },
    #[error("validator-set change at height {height} installs a set other than its header names")]
    ChangeSetMismatch { height: Height },
    #[error("header at height {height} is for chain {got}")]
    HeaderWrongChain { height: Height, got: ChainId },
    #[error("bad proof: the receipt is for height {receipt} but the block is at {block}")]
    ReceiptHeight { receipt: Height, block: Height },
    #[error("bad proof: the {what} proof is for position {proof}, the receipt says {receipt}")]
    WrongIndex {
        what: &'static str,
        proof: u64,
        receipt: u32,
    },
    #[error("bad proof: the {what} proof does not lead to the header's root: {source}")]
    BadMerkleProof {
        what: &'static str,
        source: MerkleError,
    },
    #[error("bad proof: the seed's certificate is not the one the header at {height} commits to")]
    BadSeed { height: Height },
    #[error("bad proof: state entry {key}: {source}")]
    BadStateProof { key: String, source: SmtError },
}

impl Bundle {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = vec![BUNDLE_VERSION];
        bytes.extend(codec::encode(self));
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        match bytes.split_first() {
            Some((&BUNDLE_VERSION, rest)) => {
                codec::decode_bounded(rest, MAX_BUNDLE_BYTES).map_err(BundleError::Malformed)
            }
            Some((&version, _)) => Err(BundleError::UnsupportedVersion(version)),
            None => Err(BundleError::Malformed(CodecError::Malformed(
                "empty".into(),
            ))),
        }
    }

    /// Decodes a bundle's bytes and checks it against `trust`.
    pub fn open(bytes: &[u8], trust: &Trust) -> Result<(Bundle, Verified), BundleError> {
        let bundle = Bundle::decode(bytes)?;
        let verified = bundle.verify(trust)?;
        Ok((bundle, verified))
    }

    /// Checks the whole bundle against `trust`.
    pub fn verify(&self, trust: &Trust) -> Result<Verified, BundleError> {
        if self.chain_id != trust.chain_id || self.genesis_hash != trust.genesis_hash {
            return Err(BundleError::WrongChain {
                expected: trust.chain_id.clone(),
                expected_hash: trust.genesis_hash,
                got: self.chain_id.clone(),
                got_hash: self.genesis_hash,
            });
        }
        let set = self.follow_set_changes(trust)?;
        let signers = check_signed(&trust.chain_id, &self.anchor, &set)?;
        self.verify_claim()?;
        let header = &self.anchor.header;
        Ok(Verified {
            height: header.height,
            time: header.time,
            block_id: header.id().0,
            signers,
            set_changes: self.set_changes.len(),
        })
    }

    /// The validator set in force at the anchor, reached from genesis.
    fn follow_set_changes(&self, trust: &Trust) -> Result<ValidatorSet, BundleError> {
        let mut set = trust.validators.clone();
        let mut last = Height::GENESIS;
        for change in self.set_changes.iter() {
            let height = change.signed.header.height;
            if height <= last || height >= self.anchor.header.height {
                return Err(BundleError::ChangeOutOfOrder { height });
            }
            check_signed(&trust.chain_id, &change.signed, &set)?;
            if change.next_set.hash() != change.signed.header.next_validators_hash {
                return Err(BundleError::ChangeSetMismatch { height });
            }
            set = change.next_set.clone();
            last = height;
        }
        Ok(set)
    }

    fn verify_claim(&self) -> Result<(), BundleError> {
        let header = &self.anchor.header;
        match &self.claim {
            Claim::Receipt {
                receipt,
                tx_proof,
                receipt_proof,
            } => {
                if receipt.height != header.height {
                    return Err(BundleError::ReceiptHeight {
                        receipt: receipt.height,
                        block: header.height,
                    });
                }
                check_index("transaction", tx_proof, receipt.index)?;
                check_index("receipt", receipt_proof, receipt.index)?;
                let merkle = |what| move |source| BundleError::BadMerkleProof { what, source };
                tx_proof
                    .verify(tx_leaf(&receipt.tx_hash), header.tx_root)
                    .map_err(merkle("transaction"))?;
                receipt_proof
                    .verify(receipt.leaf_hash(), header.receipts_root)
                    .map_err(merkle("receipt"))
            }
            Claim::State { entries } => {
                for entry in entries.iter() {
                    let value = entry.value.as_ref().map(|v| &v[..]);
                    entry
                        .proof
                        .verify(&header.state_root, &entry.key, value)
                        .map_err(|source| BundleError::BadStateProof {
                            key: hex::encode(&entry.key[..]),
                            source,
                        })?;
                }
                Ok(())
            }
            Claim::Seed { last_commit } => {
                if block::last_commit_hash(last_commit) != header.last_commit_hash {
                    return Err(BundleError::BadSeed {
                        height: header.height,
                    });
                }
                Ok(())
            }
        }
    }

    /// The anchor block's seed, for a seed claim. Only meaningful after [`Bundle::verify`].
    pub fn seed(&self) -> Option<Hash> {
        let Claim::Seed { last_commit } = &self.claim else {
            return None;
        };
        let header = &self.anchor.header;
        Some(execute::block_seed(&execute::BlockEnv {
            chain_id: header.chain_id.clone(),
            height: header.height,
            time: header.time,
            prev_block_id: header.prev_block_id,
            last_commit: last_commit.clone(),
        }))
    }

    /// The proven value of state `key` (outer `None`: the bundle does not cover the key;
    /// inner `None`: proven absent). Only meaningful after [`Bundle::verify`].
    pub fn state_value(&self, key: &[u8]) -> Option<Option<&[u8]>> {
        let Claim::State { entries } = &self.claim else {
            return None;
        };
        entries
            .iter()
            .find(|e| &e.key[..] == key)
            .map(|e| e.value.as_ref().map(|v| &v[..]))
    }
}

fn check_index(what: &'static str, proof: &MerkleProof, index: u32) -> Result<(), BundleError> {
    if proof.index != u64::from(index) {
        return Err(BundleError::WrongIndex {
            what,
            proof: proof.index,
            receipt: index,
        });
    }
    Ok(())
}

/// Checks `signed` is a header of `chain_id` certified by `set`; returns its signers.
fn check_signed(
    chain_id: &ChainId,
    signed: &SignedHeader,
    set: &ValidatorSet,
) -> Result<Vec<Signer>, BundleError> {
    let header = &signed.header;
    let height = header.height;
    if header.chain_id != *chain_id {
        return Err(BundleError::HeaderWrongChain {
            height,
            got: header.chain_id.clone(),
        });
    }
    if header.validators_hash != set.hash() {
        return Err(BundleError::UnknownValidatorSet {
            height,
            named: header.validators_hash,
            reached: set.hash(),
        });
    }
    let indices = signed
        .certificate
        .verify(chain_id, height, &header.id(), set)
        .map_err(|source| BundleError::BadCertificate { height, source })?;
    Ok(indices
        .iter()
        .filter_map(|&i| set.get(i))
        .map(|v| Signer {
            name: v.name.to_string(),
            power: v.power,
        })
        .collect())
}
