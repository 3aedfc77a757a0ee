//! The ledger state: a key-value map, read through [`StateView`] and changed only through
//! an [`Overlay`], whose writes are kept in key order so that applying them and committing
//! to them is deterministic.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::bounded::BoundedString;
use crate::codec::{self, CodecError};
use crate::crypto::PublicKey;
use crate::ids::{AccountId, Nonce};
use crate::tx::{MAX_LABEL_LEN, Role};
use crate::validator::ValidatorSet;

/// Why the state could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state storage failed: {0}")]
    Storage(String),
    #[error("state entry {key} is corrupt: {source}")]
    Corrupt { key: String, source: CodecError },
}

/// Read access to committed state.
pub trait StateView {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
}

impl StateView for BTreeMap<Vec<u8>, Vec<u8>> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(BTreeMap::get(self, key).cloned())
    }
}

/// The typed keys of the state map. Each kind has its own prefix byte.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StateKey {
    Account(AccountId),
    ValidatorSet,
    /// The validator set that signed the latest block: it checks the next block's
    /// `last_commit`.
    LastSigners,
    /// The seed of a recent block, `(Height, Hash)`, in a ring of slots by height.
    Seed(u8),
}

impl StateKey {
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            StateKey::Account(id) => [&[b'a'][..], &id.0.0].concat(),
            StateKey::ValidatorSet => b"v".to_vec(),
            StateKey::LastSigners => b"l".to_vec(),
            StateKey::Seed(slot) => vec![b's', slot],
        }
    }
}

/// The state key of `contract`'s storage entry `key`: a prefix byte, the name's length and
/// the name, so that no two contracts' keys meet.
pub fn contract_key(contract: &str, key: &[u8]) -> Vec<u8> {
    let name = contract.as_bytes();
    // Contract names are bounded far below 256 bytes (tx::MAX_CONTRACT_NAME_LEN).
    let len = u8::try_from(name.len()).unwrap_or(u8::MAX);
    [&[b'c', len][..], name, key].concat()
}

/// An account: its key, role and next nonce.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode, Serialize, Deserialize)]
pub struct Account {
    pub key: PublicKey,
    pub role: Role,
    pub nonce: Nonce,
    pub label: BoundedString<MAX_LABEL_LEN>,
}

/// Pending writes over a [`StateView`]: `None` deletes.
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A view plus pending writes. Reads see the writes first.
#[derive(Debug)]
pub struct Overlay<'a, V: StateView + ?Sized> {
    base: &'a V,
    changes: Changes,
    /// What each write since the last checkpoint replaced (None: the key was not pending),
    /// so a rollback costs the transaction's writes, not the block's.
    journal: Vec<Undo>,
}

/// A written key and the pending value it replaced (None: the key was not pending).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// A point an [`Overlay`] can roll back to.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoint(usize);

impl<'a, V: StateView + ?Sized> Overlay<'a, V> {
    pub fn new(base: &'a V) -> Self {
        Overlay {
            base,
            changes: Changes::new(),
            journal: Vec::new(),
        }
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.changes.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(key),
        }
    }

    pub fn get<T: Decode<()>>(&self, key: StateKey) -> Result<Option<T>, StateError> {
        let raw = key.to_bytes();
        decode_entry(&raw, self.get_raw(&raw)?)
    }

    pub fn base(&self) -> &'a V {
        self.base
    }

    /// Writes raw bytes (`None` deletes).
    pub fn put_raw(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let replaced = self.changes.insert(key.clone(), value);
        self.journal.push((key, replaced));
    }

    /// Moves the pending writes out (to lend them to a contract call) ...
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    /// ... and back.
    pub fn restore_changes(&mut self, changes: Changes) {
        self.changes = changes;
    }

    pub fn put<T: Encode>(&mut self, key: StateKey, value: &T) {
        self.put_raw(key.to_bytes(), Some(codec::encode(value)));
    }

    pub fn account(&self, id: AccountId) -> Result<Option<Account>, StateError> {
        self.get(StateKey::Account(id))
    }

    pub fn validator_set(&self) -> Result<Option<ValidatorSet>, StateError> {
        self.get(StateKey::ValidatorSet)
    }

    /// Marks a point to roll back to (one transaction's changes are all-or-nothing). One
    /// level: a new checkpoint forgets the previous one.
    pub fn checkpoint(&mut self) -> Checkpoint {
        self.journal.clear();
        Checkpoint(0)
    }

    /// Undoes every write since `checkpoint`, newest first.
    pub fn rollback(&mut self, checkpoint: Checkpoint) {
        while self.journal.len() > checkpoint.0 {
            let Some((key, replaced)) = self.journal.pop() else {
                break;
            };
            match replaced {
                Some(value) => self.changes.insert(key, value),
                None => self.changes.remove(&key),
            };
        }
    }

    pub fn into_changes(self) -> Changes {
        self.changes
    }
}

fn decode_entry<T: Decode<()>>(
    key: &[u8],
    value: Option<Vec<u8>>,
) -> Result<Option<T>, StateError> {
    value
        .map(|bytes| codec::decode(&bytes))
        .transpose()
        .map_err(|source| StateError::Corrupt {
            key: hex::encode(key),
            source,
        })
}

/// Reads `key` as it will be once `changes` are applied to `base`.
pub fn get_after<V: StateView + ?Sized, T: Decode<()>>(
    base: &V,
    changes: &Changes,
    key: StateKey,
) -> Result<Option<T>, StateError> {
    let raw = key.to_bytes();
    let value = match changes.get(&raw) {
        Some(value) => value.clone(),
        None => base.get(&raw)?,
    };
    decode_entry(&raw, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_reads_its_writes_and_rolls_back() {
        let base = BTreeMap::from([(b"v".to_vec(), vec![1u8])]);
        let mut overlay = Overlay::new(&base);
        assert_eq!(overlay.get_raw(b"v").unwrap(), Some(vec![1]));
        overlay.put_raw(b"w".to_vec(), Some(vec![2]));
        let checkpoint = overlay.checkpoint();
        overlay.put_raw(b"v".to_vec(), None);
        overlay.put_raw(b"w".to_vec(), Some(vec![3]));
        overlay.put_raw(b"x".to_vec(), Some(vec![4]));
        assert_eq!(overlay.get_raw(b"v").unwrap(), None);
        overlay.rollback(checkpoint);
        assert_eq!(overlay.get_raw(b"v").unwrap(), Some(vec![1]));
        assert_eq!(overlay.get_raw(b"w").unwrap(), Some(vec![2]));
        assert_eq!(overlay.get_raw(b"x").unwrap(), None);
    }
}
