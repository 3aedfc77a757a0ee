//! Blocks, headers and commit certificates.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::BoundedVec;
use crate::codec::{self, CodecError};
use crate::crypto::{self, PublicKey, Signature};
use crate::hash::Hash;
use crate::ids::{ChainId, Height, Round};
use crate::merkle;
use crate::time::Timestamp;
use crate::tx::SignedTransaction;
use crate::typed_hash;
use crate::validator::{MAX_VALIDATORS, ValidatorSet};

/// Most transactions in one block.
pub const MAX_BLOCK_TXS: usize = 20_000;
/// Largest encoded block.
pub const MAX_BLOCK_BYTES: usize = 8 * 1024 * 1024;

typed_hash!(
    /// A block's id: the hash of its header.
    BlockHash
);

/// A block header.
///
/// `state_root` is the state *after* executing this block's transactions, so a receipt or
/// state entry of block h is proven against header h itself; validators execute a proposal
/// before voting for it.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Header {
    pub chain_id: ChainId,
    pub height: Height,
    pub time: Timestamp,
    /// Id of the block at `height - 1`; for height 1, the genesis hash.
    pub prev_block_id: BlockHash,
    /// RFC 6962 root over the transaction hashes.
    pub tx_root: Hash,
    /// RFC 6962 root over the encoded receipts, in transaction order.
    pub receipts_root: Hash,
    pub state_root: Hash,
    /// Hash of the set that signs this block's commit certificate.
    pub validators_hash: Hash,
    /// Hash of the set that signs the next block's.
    pub next_validators_hash: Hash,
    pub proposer: PublicKey,
    /// [`last_commit_hash`] of the block's `last_commit`.
    pub last_commit_hash: Hash,
}

impl Header {
    pub fn id(&self) -> BlockHash {
        BlockHash(Hash::domain(
            b"bidchain/header/v1\0",
            &[&codec::encode(self)],
        ))
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Block {
    pub header: Header,
    pub txs: BoundedVec<SignedTransaction, MAX_BLOCK_TXS>,
    /// The commit certificate of the block at `height - 1` as the proposer saw it (none at
    /// height 1). Its signatures make the block's random seed: see `execute::block_seed`.
    pub last_commit: Option<CommitCertificate>,
}

/// The header's commitment to a block's `last_commit`.
pub fn last_commit_hash(last_commit: &Option<CommitCertificate>) -> Hash {
    Hash::domain(b"bidchain/last-commit/v1\0", &[&codec::encode(last_commit)])
}

impl Block {
    pub fn id(&self) -> BlockHash {
        self.header.id()
    }

    /// The transaction tree's leaves, in block order.
    pub fn tx_leaves(&self) -> Vec<Hash> {
        tx_leaves(&self.txs)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Block, CodecError> {
        codec::decode_bounded(bytes, MAX_BLOCK_BYTES)
    }
}

/// Leaves of a transaction tree: one per transaction hash, so whoever knows a transaction's
/// hash can check its inclusion proof.
pub fn tx_leaves(txs: &[SignedTransaction]) -> Vec<Hash> {
    txs.iter().map(|tx| tx_leaf(&tx.hash())).collect()
}

pub fn tx_leaf(hash: &crate::tx::TxHash) -> Hash {
    merkle::leaf_hash(&hash.0.0)
}

/// One validator's precommit signature inside a certificate.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct CommitSig {
    /// Index into the validator set in force at the block's height.
    pub validator_index: u16,
    pub signature: Signature,
}

/// Proof that a quorum (> 2/3 of the voting power) precommitted this block id at this
/// height and round. Stored with every block.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct CommitCertificate {
    pub height: Height,
    pub round: Round,
    pub block_id: BlockHash,
    pub signatures: BoundedVec<CommitSig, MAX_VALIDATORS>,
}

/// The bytes a validator signs to precommit `block_id`.
pub fn precommit_signing_bytes(
    chain_id: &ChainId,
    height: Height,
    round: Round,
    block_id: &BlockHash,
) -> Vec<u8> {
    let mut bytes = b"bidchain/precommit/v1\0".to_vec();
    bytes.extend(codec::encode(&(chain_id, height, round, block_id)));
    bytes
}

/// Why a commit certificate does not prove a commit.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CertificateError {
    #[error("certificate is for height {cert} but the block is at {block}")]
    WrongHeight { cert: Height, block: Height },
    #[error("certificate is for block {cert}, not {block}")]
    WrongBlock { cert: BlockHash, block: BlockHash },
    #[error("signer index {0} is not in the validator set")]
    UnknownSigner(u16),
    #[error("validator {0} signed twice")]
    DuplicateSigner(String),
    #[error("signature of validator {0} does not verify")]
    BadSignature(String),
    #[error("signers hold {got} of the voting power; a quorum needs {need}")]
    NoQuorum { got: u64, need: u64 },
}

impl CommitCertificate {
    /// Checks the certificate proves a commit of `block_id` at `height` by `validators`.
    /// Returns the indices of the signers.
    pub fn verify(
        &self,
        chain_id: &ChainId,
        height: Height,
        block_id: &BlockHash,
        validators: &ValidatorSet,
    ) -> Result<Vec<usize>, CertificateError> {
        if self.height != height {
            return Err(CertificateError::WrongHeight {
                cert: self.height,
                block: height,
            });
        }
        if &self.block_id != block_id {
            return Err(CertificateError::WrongBlock {
                cert: self.block_id,
                block: *block_id,
            });
        }
        let signers = self.signer_indices(validators)?;
        let power: u64 = signers
            .iter()
            .filter_map(|&i| validators.get(i))
            .map(|v| v.power)
            .sum();
        if power < validators.quorum_power() {
            return Err(CertificateError::NoQuorum {
                got: power,
                need: validators.quorum_power(),
            });
        }
        self.verify_signatures(chain_id, &signers, validators)?;
        Ok(signers)
    }

    fn signer_indices(&self, validators: &ValidatorSet) -> Result<Vec<usize>, CertificateError> {
        let mut seen = vec![false; validators.len()];
        let mut signers = Vec::with_capacity(self.signatures.len());
        for sig in self.signatures.iter() {
            let index = usize::from(sig.validator_index);
            let validator = validators
                .get(index)
                .ok_or(CertificateError::UnknownSigner(sig.validator_index))?;
            if std::mem::replace(&mut seen[index], true) {
                return Err(CertificateError::DuplicateSigner(
                    validator.name.to_string(),
                ));
            }
            signers.push(index);
        }
        Ok(signers)
    }

    /// Batch-verifies; on failure, finds the bad signature one by one to name its signer.
    fn verify_signatures(
        &self,
        chain_id: &ChainId,
        signers: &[usize],
        validators: &ValidatorSet,
    ) -> Result<(), CertificateError> {
        let message = precommit_signing_bytes(chain_id, self.height, self.round, &self.block_id);
        let keys: Vec<PublicKey> = signers
            .iter()
            .filter_map(|&i| validators.get(i))
            .map(|v| v.key)
            .collect();
        let sigs: Vec<Signature> = self.signatures.iter().map(|s| s.signature).collect();
        let messages = vec![message.as_slice(); keys.len()];
        if crypto::verify_batch(&keys, &messages, &sigs).is_ok() {
            return Ok(());
        }
        for (&i, sig) in signers.iter().zip(&sigs) {
            if let Some(v) = validators.get(i)
                && v.key.verify(&message, sig).is_err()
            {
                return Err(CertificateError::BadSignature(v.name.to_string()));
            }
        }
        // Batch and single verification disagree only on malformed input (e.g. a bad
        // point that single verification also rejects); refuse rather than accept.
        Err(CertificateError::BadSignature("unknown".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounded::BoundedString;
    use crate::crypto::Keypair;
    use crate::validator::Validator;

    fn setup(n: u64) -> (Vec<Keypair>, ValidatorSet, ChainId) {
        let keys: Vec<_> = (0..n).map(Keypair::from_seed_for_tests).collect();
        let set = ValidatorSet::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| Validator {
                    name: BoundedString::new(format!("v{i}")).unwrap(),
                    key: k.public(),
                    power: 1,
                })
                .collect(),
        )
        .unwrap();
        (keys, set, ChainId::new("test").unwrap())
    }

    fn cert(
        keys: &[Keypair],
        signers: &[usize],
        chain: &ChainId,
        id: BlockHash,
    ) -> CommitCertificate {
        let msg = precommit_signing_bytes(chain, Height(5), Round(1), &id);
        let signatures = signers
            .iter()
            .map(|&i| CommitSig {
                validator_index: u16::try_from(i).unwrap(),
                signature: keys[i].sign(&msg),
            })
            .collect();
        CommitCertificate {
            height: Height(5),
            round: Round(1),
            block_id: id,
            signatures: BoundedVec::new(signatures).unwrap(),
        }
    }

    #[test]
    fn quorum_certificate_verifies_and_each_defect_has_its_reason() {
        let (keys, set, chain) = setup(4);
        let id = BlockHash(Hash::digest(b"block"));
        let good = cert(&keys, &[0, 1, 3], &chain, id);
        assert_eq!(good.verify(&chain, Height(5), &id, &set), Ok(vec![0, 1, 3]));

        let short = cert(&keys, &[0, 1], &chain, id);
        assert_eq!(
            short.verify(&chain, Height(5), &id, &set),
            Err(CertificateError::NoQuorum { got: 2, need: 3 })
        );
        let dup = cert(&keys, &[0, 1, 1], &chain, id);
        assert!(matches!(
            dup.verify(&chain, Height(5), &id, &set),
            Err(CertificateError::DuplicateSigner(_))
        ));
        let mut forged = good.clone();
        forged.signatures = BoundedVec::new(
            good.signatures
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, mut s)| {
                    if i == 2 {
                        s.signature.0[0] ^= 1;
                    }
                    s
                })
                .collect(),
        )
        .unwrap();
        assert_eq!(
            forged.verify(&chain, Height(5), &id, &set),
            Err(CertificateError::BadSignature("v3".to_owned()))
        );
        let other = BlockHash(Hash::digest(b"other"));
        assert!(matches!(
            good.verify(&chain, Height(5), &other, &set),
            Err(CertificateError::WrongBlock { .. })
        ));
        let other_chain = ChainId::new("other").unwrap();
        assert!(good.verify(&other_chain, Height(5), &id, &set).is_err());
    }
}
