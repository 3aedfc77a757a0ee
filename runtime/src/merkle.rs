//! A binary Merkle tree as in RFC 6962 / RFC 9162 §2.1: leaf hash `H(0x00 || data)`, node
//! hash `H(0x01 || left || right)`, the left subtree holding the largest power of two less
//! than n leaves. The domain bytes stop a leaf from passing as an inner node.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::BoundedVec;
use crate::hash::Hash;
use sha2::{Digest, Sha256};

/// A proof path has one sibling per level; 64 levels cover any u64 leaf count.
pub const MAX_PROOF_DEPTH: usize = 64;

pub fn leaf_hash(data: &[u8]) -> Hash {
    Hash::domain(&[0x00], &[data])
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

/// The root over leaf hashes. Pairing level by level and carrying an odd last node up
/// unchanged builds exactly the RFC 6962 tree. The empty tree's root is `SHA-256("")`.
pub fn root(leaves: &[Hash]) -> Hash {
    if leaves.is_empty() {
        return Hash::digest(b"");
    }
    let mut level = leaves.to_vec();
    while level.len() > 1 {
        level = level_up(&level);
    }
    level[0]
}

/// An inclusion proof: the audit path of leaf `index` in a tree of `size` leaves.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct MerkleProof {
    pub index: u64,
    pub size: u64,
    pub path: BoundedVec<Hash, MAX_PROOF_DEPTH>,
}

/// Why a proof was not produced or does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MerkleError {
    #[error("leaf index {index} is outside a tree of {size} leaves")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("proof path has the wrong length for leaf {index} of {size}")]
    BadPathLength { index: u64, size: u64 },
    #[error("proof leads to root {computed}, not {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
}

/// Builds the audit path of `leaves[index]`, bottom up.
pub fn prove(leaves: &[Hash], index: usize) -> Result<MerkleProof, MerkleError> {
    let size = leaves.len() as u64;
    if index >= leaves.len() {
        return Err(MerkleError::IndexOutOfRange {
            index: index as u64,
            size,
        });
    }
    let mut path = BoundedVec::empty();
    let mut level = leaves.to_vec();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            // A tree of at most 2^64 leaves has at most 64 levels, the bound of the path.
            path.push(level[sibling])
                .map_err(|_| MerkleError::BadPathLength {
                    index: index as u64,
                    size,
                })?;
        }
        level = level_up(&level);
        i /= 2;
    }
    Ok(MerkleProof {
        index: index as u64,
        size,
        path,
    })
}

fn level_up(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => node_hash(left, right),
            [single] => *single,
            _ => unreachable!("chunks(2) yields one or two items"),
        })
        .collect()
}

impl MerkleProof {
    /// The root this proof leads to from `leaf` (RFC 9162 §2.1.3.2).
    pub fn compute_root(&self, leaf: Hash) -> Result<Hash, MerkleError> {
        let (index, size) = (self.index, self.size);
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let bad_path = MerkleError::BadPathLength { index, size };
        let (mut f_n, mut s_n) = (index, size - 1);
        let mut r = leaf;
        for p in self.path.iter() {
            if s_n == 0 {
                return Err(bad_path);
            }
            if f_n & 1 == 1 || f_n == s_n {
                r = node_hash(p, &r);
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f_n >>= 1;
            s_n >>= 1;
        }
        if s_n != 0 {
            return Err(bad_path);
        }
        Ok(r)
    }

    /// Checks that `leaf` is at `self.index` in the tree with root `expected`.
    pub fn verify(&self, leaf: Hash, expected: Hash) -> Result<(), MerkleError> {
        let computed = self.compute_root(leaf)?;
        if computed == expected {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch { computed, expected })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The leaves of the RFC 6962 test vectors used by Certificate Transparency's
    /// reference implementations.
    fn ct_leaves() -> Vec<Hash> {
        let inputs: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        inputs.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn rfc6962_root_vectors() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = ct_leaves();
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(
                root(&leaves[..=n]).to_hex(),
                *want,
                "root of {} leaves",
                n + 1
            );
        }
        assert_eq!(root(&[]), Hash::digest(b""));
    }

    #[test]
    fn rfc6962_audit_path_vector() {
        // Inclusion proof of leaf 0 in the 8-leaf tree, from the CT reference tests.
        let proof = prove(&ct_leaves(), 0).unwrap();
        let path: Vec<String> = proof.path.iter().map(Hash::to_hex).collect();
        assert_eq!(
            path,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    #[test]
    fn wrong_leaf_index_or_root_is_refused() {
        let leaves = ct_leaves();
        let root8 = root(&leaves);
        let proof = prove(&leaves, 5).unwrap();
        assert_eq!(proof.verify(leaves[5], root8), Ok(()));
        assert!(matches!(
            proof.verify(leaves[4], root8),
            Err(MerkleError::RootMismatch { .. })
        ));
        let mut moved = proof.clone();
        moved.index = 4;
        assert!(moved.verify(leaves[5], root8).is_err());
        let mut short = proof.clone();
        short.path = BoundedVec::new(proof.path[..2].to_vec()).unwrap();
        assert!(matches!(
            short.verify(leaves[5], root8),
            Err(MerkleError::BadPathLength { .. })
        ));
        assert!(prove(&leaves, 8).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_leaf_proves_against_the_root(n in 1usize..130, seed in any::<u64>()) {
            let leaves: Vec<Hash> =
                (0..n).map(|i| leaf_hash(&[seed.to_le_bytes(), (i as u64).to_le_bytes()].concat())).collect();
            let r = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let proof = prove(&leaves, i).unwrap();
                prop_assert_eq!(proof.verify(*leaf, r), Ok(()));
            }
        }

        #[test]
        fn a_changed_sibling_breaks_the_proof(n in 2usize..64, pick in any::<usize>(), bit in 0usize..256) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&(i as u64).to_le_bytes())).collect();
            let i = pick % n;
            let mut proof = prove(&leaves, i).unwrap();
            let mut path = proof.path.clone().into_inner();
            let level = bit % path.len();
            path[level].0[bit / 8] ^= 1 << (bit % 8);
            proof.path = BoundedVec::new(path).unwrap();
            prop_assert!(proof.verify(leaves[i], root(&leaves)).is_err());
        }
    }
}
