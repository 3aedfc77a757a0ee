//! RocksDB storage, one column family per table. A block, its certificate, its receipts,
//! its transaction index and its state changes are written in one synced `WriteBatch`, so a
//! crash leaves either all of a block or none of it.

use std::path::Path;
use std::sync::Arc;

use bidchain_consensus::Message;
use bidchain_genesis::Genesis;
use bidchain_runtime::block::{Block, CommitCertificate, Header};
use bidchain_runtime::codec::{self, CodecError};
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::Height;
use bidchain_runtime::receipt::Receipt;
use bidchain_runtime::state::{self, Changes, StateError, StateView};
use bidchain_runtime::tx::{SignedTransaction, TxHash};
use bincode::{Decode, Encode};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch, WriteOptions};

/// Why storage failed. Every variant is fatal for the operation, never silently skipped.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("table {table} entry is corrupt: {source}")]
    Corrupt {
        table: &'static str,
        source: CodecError,
    },
    #[error("column family {0} is missing")]
    MissingTable(&'static str),
    #[error("data dir belongs to genesis {stored}, not to this genesis {given}")]
    GenesisMismatch { stored: Hash, given: Hash },
    #[error("genesis: {0}")]
    Genesis(#[from] bidchain_genesis::GenesisError),
    #[error("block {got} does not follow the stored tip {tip}")]
    NotNext { tip: Height, got: Height },
}

/// A typed table: the column family name and its key and value types.
pub trait Table {
    const NAME: &'static str;
    type Key: TableKey;
    type Value: Encode + Decode<()>;
}

/// Key bytes of a table. Heights are big-endian so iteration runs in height order.
pub trait TableKey {
    fn key_bytes(&self) -> Vec<u8>;
}

impl TableKey for Height {
    fn key_bytes(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }
}

/// A consensus message of this validator's at a height: (height, sequence number).
impl TableKey for (Height, u32) {
    fn key_bytes(&self) -> Vec<u8> {
        let mut key = self.0.0.to_be_bytes().to_vec();
        key.extend(self.1.to_be_bytes());
        key
    }
}

impl TableKey for TxHash {
    fn key_bytes(&self) -> Vec<u8> {
        self.0.0.to_vec()
    }
}

impl TableKey for MetaKey {
    fn key_bytes(&self) -> Vec<u8> {
        vec![*self as u8]
    }
}

/// Where a committed transaction is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
}

/// Keys of the metadata table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    Chain = 1,
}

/// Which chain the database holds and how far it has committed. Written in the same batch
/// as each block, so it never points past what is stored.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Encode, Decode)]
pub struct ChainMeta {
    pub genesis_hash: Hash,
    pub latest_height: Height,
}

macro_rules! table {
    ($name:ident, $cf:literal, $key:ty, $value:ty) => {
        #[derive(Debug)]
        pub struct $name;
        impl Table for $name {
            const NAME: &'static str = $cf;
            type Key = $key;
            type Value = $value;
        }
    };
}

table!(Headers, "headers", Height, Header);
table!(Bodies, "blocks", Height, BlockBody);

/// What a block holds besides its header.
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct BlockBody {
    pub txs: Vec<SignedTransaction>,
    pub last_commit: Option<CommitCertificate>,
}
table!(Commits, "commits", Height, CommitCertificate);
table!(TxIndex, "txs", TxHash, TxLocation);
table!(Receipts, "receipts", TxHash, Receipt);
table!(Meta, "meta", MetaKey, ChainMeta);
// What this validator signed (and the prevotes behind its lock) at heights not yet
// committed: the consensus core's memory across a crash.
table!(ConsensusLog, "consensus", (Height, u32), Message);

/// Raw state entries: keys and values are the state machine's own bytes.
const STATE_CF: &str = "state";
const ALL_CFS: [&str; 8] = [
    Headers::NAME,
    Bodies::NAME,
    Commits::NAME,
    TxIndex::NAME,
    Receipts::NAME,
    STATE_CF,
    Meta::NAME,
    ConsensusLog::NAME,
];

/// Everything one block commit writes.
#[derive(Debug)]
pub struct BlockCommit<'a> {
    pub block: &'a Block,
    pub certificate: &'a CommitCertificate,
    pub receipts: &'a [Receipt],
    pub changes: &'a Changes,
}

/// The node's database. Cloning it clones a handle (execution lends one to each contract
/// call), not the data.
#[derive(Clone, Debug)]
pub struct Storage {
    db: Arc<DB>,
}

impl Storage {
    /// Opens (or creates) the database and checks it belongs to `genesis`; a new database
    /// gets the genesis state in one synced batch.
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Storage, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let storage = Storage { db: Arc::new(db) };
        storage.init_genesis(genesis)?;
        Ok(storage)
    }

    fn init_genesis(&self, genesis: &Genesis) -> Result<(), StorageError> {
        let given = genesis.hash();
        match self.meta()? {
            Some(meta) if meta.genesis_hash == given => return Ok(()),
            Some(meta) => {
                return Err(StorageError::GenesisMismatch {
                    stored: meta.genesis_hash,
                    given,
                });
            }
            None => {}
        }
        let mut batch = WriteBatch::default();
        let state_cf = self.cf(STATE_CF)?;
        for (key, value) in genesis.initial_state()? {
            batch.put_cf(state_cf, key, value);
        }
        let meta = ChainMeta {
            genesis_hash: given,
            latest_height: Height::GENESIS,
        };
        self.put::<Meta>(&mut batch, &MetaKey::Chain, &meta)?;
        self.write_synced(batch)
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(name)
            .ok_or(StorageError::MissingTable(name))
    }

    pub fn get<T: Table>(&self, key: &T::Key) -> Result<Option<T::Value>, StorageError> {
        let Some(bytes) = self.db.get_pinned_cf(self.cf(T::NAME)?, key.key_bytes())? else {
            return Ok(None);
        };
        codec::decode(&bytes)
            .map(Some)
            .map_err(|source| StorageError::Corrupt {
                table: T::NAME,
                source,
            })
    }

    fn put<T: Table>(
        &self,
        batch: &mut WriteBatch,
        key: &T::Key,
        value: &T::Value,
    ) -> Result<(), StorageError> {
        batch.put_cf(self.cf(T::NAME)?, key.key_bytes(), codec::encode(value));
        Ok(())
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        Ok(self.db.write_opt(batch, &opts)?)
    }

    fn meta(&self) -> Result<Option<ChainMeta>, StorageError> {
        self.get::<Meta>(&MetaKey::Chain)
    }

    /// The height of the last committed block (0 before the first).
    pub fn latest_height(&self) -> Result<Height, StorageError> {
        Ok(self.meta()?.map_or(Height::GENESIS, |m| m.latest_height))
    }

    pub fn block(&self, height: Height) -> Result<Option<Block>, StorageError> {
        let (Some(header), Some(body)) =
            (self.get::<Headers>(&height)?, self.get::<Bodies>(&height)?)
        else {
            return Ok(None);
        };
        // A stored body always fits: it was a block's body when it was written.
        let txs =
            bidchain_runtime::BoundedVec::new(body.txs).map_err(|e| StorageError::Corrupt {
                table: Bodies::NAME,
                source: CodecError::Malformed(e.to_string()),
            })?;
        Ok(Some(Block {
            header,
            txs,
            last_commit: body.last_commit,
        }))
    }

    /// Committed blocks with their certificates from `from` on, for a peer that lacks
    /// them: at most `max_blocks`, and no more once `max_bytes` (encoded) are reached; the
    /// first block is always included.
    pub fn committed_blocks(
        &self,
        from: Height,
        max_blocks: u64,
        max_bytes: usize,
    ) -> Result<Vec<(Block, CommitCertificate)>, StorageError> {
        let last = self
            .latest_height()?
            .0
            .min(from.0.saturating_add(max_blocks.saturating_sub(1)));
        let mut blocks = Vec::new();
        let mut bytes = 0usize;
        for height in (from.0.max(1)..=last).map(Height) {
            let (Some(block), Some(certificate)) =
                (self.block(height)?, self.get::<Commits>(&height)?)
            else {
                break;
            };
            bytes = bytes.saturating_add(block.encode().len() + codec::encode(&certificate).len());
            if bytes > max_bytes && !blocks.is_empty() {
                break;
            }
            blocks.push((block, certificate));
        }
        Ok(blocks)
    }

    /// Writes a whole block atomically and durably (WAL synced before returning).
    pub fn commit_block(&self, commit: &BlockCommit<'_>) -> Result<(), StorageError> {
        let height = commit.block.header.height;
        let Some(mut meta) = self.meta()? else {
            return Err(StorageError::MissingTable(Meta::NAME));
        };
        if height != meta.latest_height.next() {
            return Err(StorageError::NotNext {
                tip: meta.latest_height,
                got: height,
            });
        }
        let mut batch = WriteBatch::default();
        self.put::<Headers>(&mut batch, &height, &commit.block.header)?;
        let body = BlockBody {
            txs: commit.block.txs.to_vec(),
            last_commit: commit.block.last_commit.clone(),
        };
        self.put::<Bodies>(&mut batch, &height, &body)?;
        self.put::<Commits>(&mut batch, &height, commit.certificate)?;
        for receipt in commit.receipts {
            let location = TxLocation {
                height,
                index: receipt.index,
            };
            self.put::<TxIndex>(&mut batch, &receipt.tx_hash, &location)?;
            self.put::<Receipts>(&mut batch, &receipt.tx_hash, receipt)?;
        }
        let state_cf = self.cf(STATE_CF)?;
        for (key, value) in commit.changes {
            match value {
                Some(value) => batch.put_cf(state_cf, key, value),
                None => batch.delete_cf(state_cf, key),
            }
        }
        // Messages signed up to this height can no longer matter: the height is decided.
        let log_cf = self.cf(ConsensusLog::NAME)?;
        batch.delete_range_cf(log_cf, Vec::new(), (height.next(), 0).key_bytes());
        meta.latest_height = height;
        self.put::<Meta>(&mut batch, &MetaKey::Chain, &meta)?;
        self.write_synced(batch)
    }

    /// Makes messages this validator signed durable (WAL synced) before they are sent:
    /// each entry is (height, sequence number at that height, message).
    pub fn log_signed(&self, entries: &[(Height, u32, &Message)]) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        for (height, seq, message) in entries {
            self.put::<ConsensusLog>(&mut batch, &(*height, *seq), message)?;
        }
        self.write_synced(batch)
    }

    /// The messages logged at `height`, in the order they were logged.
    pub fn signed_at(&self, height: Height) -> Result<Vec<Message>, StorageError> {
        let prefix = height.0.to_be_bytes();
        let cf = self.cf(ConsensusLog::NAME)?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(cf, prefix) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            out.push(
                codec::decode(&value).map_err(|source| StorageError::Corrupt {
                    table: ConsensusLog::NAME,
                    source,
                })?,
            );
        }
        Ok(out)
    }

    /// The state root after applying `changes` to the committed state: a merge-join of the
    /// state column family (in key order) with the changes (in key order).
    pub fn state_root_with(&self, changes: &Changes) -> Result<Hash, StorageError> {
        let mut leaves = Vec::new();
        let mut pending = changes.iter().peekable();
        for item in self.db.iterator_cf(self.cf(STATE_CF)?, IteratorMode::Start) {
            let (key, value) = item?;
            while let Some((ck, cv)) = pending.next_if(|(ck, _)| ck.as_slice() < &*key) {
                if let Some(cv) = cv {
                    leaves.push(state::entry_leaf(ck, cv));
                }
            }
            match pending.next_if(|(ck, _)| ck.as_slice() == &*key) {
                Some((_, Some(cv))) => leaves.push(state::entry_leaf(&key, cv)),
                Some((_, None)) => {}
                None => leaves.push(state::entry_leaf(&key, &value)),
            }
        }
        for (ck, cv) in pending {
            if let Some(cv) = cv {
                leaves.push(state::entry_leaf(ck, cv));
            }
        }
        Ok(bidchain_runtime::merkle::root(&leaves))
    }
}

impl StateView for Storage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self
            .cf(STATE_CF)
            .map_err(|e| StateError::Storage(e.to_string()))?;
        self.db
            .get_cf(cf, key)
            .map_err(|e| StateError::Storage(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn merge_join_root_equals_root_of_applied_map() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let storage = Storage::open(dir.path(), &genesis).unwrap();
        let mut applied: BTreeMap<Vec<u8>, Vec<u8>> = genesis.initial_state().unwrap();
        let first = applied.keys().next().unwrap().clone();
        let mut changes = Changes::new();
        changes.insert(vec![0], Some(vec![1]));
        changes.insert(first.clone(), None);
        changes.insert(vec![0xff, 1], Some(vec![2]));
        applied.remove(&first);
        applied.insert(vec![0], vec![1]);
        applied.insert(vec![0xff, 1], vec![2]);
        let expected = state::state_root(applied.iter().map(|(k, v)| (&k[..], &v[..])));
        assert_eq!(storage.state_root_with(&changes).unwrap(), expected);
    }

    #[test]
    fn reopening_with_another_genesis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path(), &crate::testing::genesis_for(&[1], &[])).unwrap());
        let err = Storage::open(dir.path(), &crate::testing::genesis_for(&[2], &[])).unwrap_err();
        assert!(matches!(err, StorageError::GenesisMismatch { .. }), "{err}");
    }
}
