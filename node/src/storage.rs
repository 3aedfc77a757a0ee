//! RocksDB storage, one column family per table. A block, its certificate, its receipts,
//! its state changes and its tree nodes are written in one `WriteBatch` (synced, except
//! for blocks fetched from peers: see [`Durability`]), so a crash leaves either all of a
//! block or none of it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::read_cache::ReadCache;
use crate::tree_top::{FRONTIER_DEPTH, Stored, TreeTop, TreeView};
use bidchain_consensus::Message;
use bidchain_genesis::Genesis;
use bidchain_runtime::block::{Block, BlockHash, CommitCertificate, Header};
use bidchain_runtime::bounded::BoundedVec;
use bidchain_runtime::codec::{self, CodecError};
use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::Height;
use bidchain_runtime::receipt::{Event, MAX_EVENTS_PER_TX, Receipt, TxOutcome};
use bidchain_runtime::smt::{self, Node, NodePos, NodeWrites, SmtError, TreeUpdate};
use bidchain_runtime::state::{Changes, StateError, StateView};
use bidchain_runtime::tx::{SignedTransaction, TxHash};
use bidchain_runtime::validator::ValidatorSet;
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
    #[error("state tree: {0}")]
    Tree(#[from] SmtError),
    #[error(
        "the data dir was written before the state tree existed: remove it and let the node sync the chain again"
    )]
    NoStateTree,
    #[error("block {got} does not follow the stored tip {tip}")]
    NotNext { tip: Height, got: Height },
    #[error(
        "the stored state tree has root {rebuilt}, but the block at height {height} says {expected}: the data dir is corrupt"
    )]
    TreeMismatch {
        height: Height,
        rebuilt: Hash,
        expected: Hash,
    },
    #[error("the data dir has no header for its latest height {0}: it is corrupt")]
    MissingHeader(Height),
    #[error("a read of the state at height {read} met the state at {now}: read it again")]
    StateMoved { read: Height, now: Height },
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

impl TableKey for (Height, BlockHash) {
    fn key_bytes(&self) -> Vec<u8> {
        [&self.0.0.to_be_bytes()[..], &self.1.0.0[..]].concat()
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

/// A [`BlockBody`] borrowed from its block, written without copying the transactions; its
/// encoding is the `BlockBody`'s.
#[derive(Encode)]
struct BlockBodyRef<'a> {
    txs: &'a [SignedTransaction],
    last_commit: &'a Option<CommitCertificate>,
}

impl<'a> BlockBodyRef<'a> {
    fn of(block: &'a Block) -> Self {
        BlockBodyRef {
            txs: &block.txs,
            last_commit: &block.last_commit,
        }
    }
}
table!(Commits, "commits", Height, CommitCertificate);
// A receipt names its transaction's height and index: it is the transaction index too.
// Read it whole with [`Storage::receipt`].
table!(Receipts, "tx_receipts", TxHash, StoredReceipt);

/// A [`Receipt`] as stored: without its transaction's hash, which is its key (32 bytes
/// less per transaction to write; LZ4 had squeezed most of the repeat on disk).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct StoredReceipt {
    pub height: Height,
    pub index: u32,
    pub outcome: TxOutcome,
    pub events: BoundedVec<Event, MAX_EVENTS_PER_TX>,
    pub fuel_used: u64,
}

impl StoredReceipt {
    fn into_receipt(self, tx_hash: TxHash) -> Receipt {
        Receipt {
            tx_hash,
            height: self.height,
            index: self.index,
            outcome: self.outcome,
            events: self.events,
            fuel_used: self.fuel_used,
        }
    }
}

/// A [`StoredReceipt`] borrowed from its receipt, written without copying the events; its
/// encoding is the `StoredReceipt`'s.
#[derive(Encode)]
struct StoredReceiptRef<'a> {
    height: Height,
    index: u32,
    outcome: &'a TxOutcome,
    events: &'a BoundedVec<Event, MAX_EVENTS_PER_TX>,
    fuel_used: u64,
}

impl<'a> StoredReceiptRef<'a> {
    fn of(receipt: &'a Receipt) -> Self {
        StoredReceiptRef {
            height: receipt.height,
            index: receipt.index,
            outcome: &receipt.outcome,
            events: &receipt.events,
            fuel_used: receipt.fuel_used,
        }
    }
}
table!(Meta, "meta", MetaKey, ChainMeta);
// The validator set a block installs for the next height, for blocks that change it: the
// path a light client follows from genesis.
table!(SetChanges, "set_changes", Height, ValidatorSet);
// What this validator signed (and the prevotes behind its lock) at heights not yet
// committed: the consensus core's memory across a crash.
table!(ConsensusLog, "consensus", (Height, u32), Message);
// The blocks behind what this validator signed at heights not yet committed: after a crash
// it can still commit a block it precommitted, even one it proposed and nobody else holds.
table!(SignedBlocks, "signed_blocks", (Height, BlockHash), Block);

/// Raw state entries: keys and values are the state machine's own bytes.
const STATE_CF: &str = "state";
/// The state tree's nodes by position (`smt::NodePos::to_bytes`), latest version only.
const TREE_CF: &str = "state_tree";
const ALL_CFS: [&str; 10] = [
    Headers::NAME,
    Bodies::NAME,
    Commits::NAME,
    Receipts::NAME,
    STATE_CF,
    TREE_CF,
    SetChanges::NAME,
    Meta::NAME,
    ConsensusLog::NAME,
    SignedBlocks::NAME,
];

/// Tables that data dirs written by earlier versions hold and this one drops on open
/// (RocksDB opens a database only with all its column families named): `txs`, the
/// transaction index, which the receipts made redundant.
const RETIRED_CFS: [&str; 1] = ["txs"];
/// Receipts as earlier versions stored them, whole: moved into [`Receipts`] on open, then
/// dropped. The name stays reserved for that.
const LEGACY_RECEIPTS_CF: &str = "receipts";
/// Bounds on one batch of receipts moved out of the legacy table (a receipt can be
/// hundreds of kilobytes).
const MIGRATION_BATCH_ENTRIES: usize = 10_000;
const MIGRATION_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// The descriptors of `names` that the data dir at `path` holds.
fn existing_cfs(opts: &Options, path: &Path, names: &[&str]) -> Vec<ColumnFamilyDescriptor> {
    let existing = DB::list_cf(opts, path).unwrap_or_default();
    names
        .iter()
        .filter(|name| existing.iter().any(|e| e == *name))
        .map(|name| ColumnFamilyDescriptor::new(*name, opts.clone()))
        .collect()
}

/// Whether a block's commit returns only once its write-ahead log is on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// What this node decided, and signed for, must survive a power loss.
    Synced,
    /// A certified block fetched from a peer: left to the next synced write (any of this
    /// validator's signed messages, a decided block) or [`Storage::sync`]. A power loss
    /// would only make the node fetch it again: RocksDB replays its log up to the last
    /// whole batch, so what is lost is the last blocks, never part of one.
    Deferred,
}

/// Everything one block commit writes.
#[derive(Debug)]
pub struct BlockCommit<'a> {
    pub block: &'a Block,
    pub certificate: &'a CommitCertificate,
    pub receipts: &'a [Receipt],
    pub changes: &'a Changes,
    /// The state tree's node writes that go with `changes`.
    pub state_nodes: &'a NodeWrites,
    /// The set this block installs, when it changes the set.
    pub next_validators: Option<&'a ValidatorSet>,
    pub durability: Durability,
}

/// The node's database. Cloning it clones a handle (execution lends one to each contract
/// call), not the data.
#[derive(Clone, Debug)]
pub struct Storage {
    db: Arc<DB>,
    /// The committed state tree's upper levels, whose inner nodes are not stored. A
    /// commit holds it for writing from building its batch until the batch is written,
    /// so a reader that holds it sees it at the height the database is at.
    tree_top: Arc<RwLock<TreeTop>>,
    /// Committed state entries, present or known absent.
    state_cache: Arc<ReadCache<Vec<u8>, Option<Vec<u8>>>>,
    /// The keys in [`ConsensusLog`] and [`SignedBlocks`], by height.
    logged: Arc<Mutex<LoggedKeys>>,
    /// The size of the last block commit's batch: the next one starts with room for
    /// about as much ([`commit_batch_capacity`]).
    last_commit_bytes: Arc<AtomicUsize>,
}

/// The keys this validator logged ([`Storage::log_signed`]) at heights not yet committed:
/// a commit deletes them one by one, and a height with none is not looked up. A range
/// delete per commit left a range tombstone in each table's memtable, and every iterator
/// over the table re-sorted them all: an observer catching up slowed with every block
/// (79 blocks/s up to height 1,000, 4 past 3,000). Holds what is logged at undecided
/// heights only: a few messages and blocks.
type LoggedKeys = BTreeMap<Height, Vec<(&'static str, Vec<u8>)>>;

/// Bounds of the state cache. The accounts, tenders and bids a block reads were a sixth
/// of a node's consensus thread in memtable lookups. 32 MiB holds the whole state of a
/// province's busiest day of the load bench many times over.
const MAX_STATE_CACHE_ENTRIES: usize = 256 * 1024;
const MAX_STATE_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// What a cached state entry costs: its bytes and the map's own per-entry overhead.
#[expect(clippy::ptr_arg, reason = "the cache weighs with fn(&K, &V)")]
fn state_entry_bytes(key: &Vec<u8>, value: &Option<Vec<u8>>) -> usize {
    const ENTRY_OVERHEAD_BYTES: usize = 64;
    key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES
}

/// A block commit's batch grew by doubling, each time copying what it held: a seventieth
/// of a validator's samples at 5,000 bid tx/s. It starts at the last one's size and an
/// eighth more, up to this bound (an outsized block does not set every later
/// allocation).
const MAX_COMMIT_BATCH_HINT_BYTES: usize = 64 * 1024 * 1024;

fn commit_batch_capacity(last_bytes: usize) -> usize {
    last_bytes
        .saturating_add(last_bytes / 8)
        .min(MAX_COMMIT_BATCH_HINT_BYTES)
}

/// The tree's memtable. A block wrote about ten tree nodes per changed key (one, a leaf,
/// since the top is kept in memory: [`TreeTop`]), and inserting them into the skip list
/// was most of a commit. A smaller memtable is a shallower skip
/// list (flushed about once a second at 2,000 tx/s, the flush costing less than the
/// searches saved); the hint lets each insert start where the last one at the same depth
/// (the key's first 2 bytes) ended, as a batch's nodes come sorted.
const TREE_WRITE_BUFFER_BYTES: usize = 8 * 1024 * 1024;
const TREE_INSERT_HINT: &str = "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.2";

fn tree_options(base: &mut Options) -> Result<Options, StorageError> {
    // The Rust binding has no setter for the hint extractor; the options string does.
    let mut opts = base.get_options_from_string(TREE_INSERT_HINT)?;
    opts.set_write_buffer_size(TREE_WRITE_BUFFER_BYTES);
    Ok(opts)
}

/// State entries and receipts come in key order within a block's batch (receipts are
/// sorted for it): each insert starts where the last one of its first byte ended, not at
/// the skip list's top. A validator's memtable inserts, of every table, went from 11 %
/// to 7.5 % of its samples at 5,000 bid tx/s (one profile each).
const SORTED_INSERT_HINT: &str = "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1";

fn sorted_insert_options(base: &mut Options) -> Result<Options, StorageError> {
    Ok(base.get_options_from_string(SORTED_INSERT_HINT)?)
}

/// The height a [`ConsensusLog`] or [`SignedBlocks`] key starts with.
fn key_height(key: &[u8]) -> Option<Height> {
    let bytes = key.first_chunk::<8>()?;
    Some(Height(u64::from_be_bytes(*bytes)))
}

/// The stored tree nodes down to [`FRONTIER_DEPTH`], from which the top is rebuilt. Keys
/// start with the depth, big-endian: they are the table's first entries.
fn stored_top(
    db: &DB,
) -> Result<impl Iterator<Item = Result<(NodePos, Node), StorageError>> + '_, StorageError> {
    let cf = db
        .cf_handle(TREE_CF)
        .ok_or(StorageError::MissingTable(TREE_CF))?;
    let mut opts = rocksdb::ReadOptions::default();
    opts.set_iterate_upper_bound((FRONTIER_DEPTH + 1).to_be_bytes().to_vec());
    let entries = db.iterator_cf_opt(cf, opts, IteratorMode::Start);
    Ok(entries.map(|entry| {
        let (key, value) = entry?;
        Ok((NodePos::from_bytes(&key)?, Node::from_bytes(&value)?))
    }))
}

/// Moves receipts an earlier version stored whole into [`Receipts`], then drops their
/// table. Each batch deletes what it moves, so a crash midway leaves every receipt in
/// one table or the other and the next open goes on from there.
fn migrate_receipts(db: &mut DB) -> Result<(), StorageError> {
    let Some(legacy) = db.cf_handle(LEGACY_RECEIPTS_CF) else {
        return Ok(());
    };
    let target = db
        .cf_handle(Receipts::NAME)
        .ok_or(StorageError::MissingTable(Receipts::NAME))?;
    let corrupt = |source| StorageError::Corrupt {
        table: LEGACY_RECEIPTS_CF,
        source,
    };
    tracing::info!("moving receipts to the table that stores them without their hashes");
    let mut batch = WriteBatch::default();
    let mut moved = 0_usize;
    for entry in db.iterator_cf(legacy, IteratorMode::Start) {
        let (key, value) = entry?;
        let receipt: Receipt = codec::decode(&value).map_err(corrupt)?;
        batch.put_cf(target, &key, codec::encode(&StoredReceiptRef::of(&receipt)));
        batch.delete_cf(legacy, &key);
        moved += 1;
        if moved.is_multiple_of(MIGRATION_BATCH_ENTRIES)
            || batch.size_in_bytes() >= MIGRATION_BATCH_BYTES
        {
            db.write(std::mem::take(&mut batch))?;
            tracing::info!(receipts = moved, "moved receipts so far");
        }
    }
    db.write(batch)?;
    // The table is empty now; what was moved is on disk before it goes.
    db.flush_wal(true)?;
    db.drop_cf(LEGACY_RECEIPTS_CF)?;
    tracing::info!(receipts = moved, "moved receipts");
    Ok(())
}

/// The write-ahead log kept before RocksDB flushes the tables that hold its oldest file.
/// Its default (four times all the tables' write buffers, gigabytes) let the tables
/// written a little each block (headers, commits, meta) keep every log file since the
/// node started: 1.1 GB 90 s into a capacity run, all of it replayed by a restart. At
/// 128 MiB the extra flushes cost 1.7 points of a core per validator at 5,000 tx/s; at
/// 512 MiB, 1 point, within the runs' spread.
const MAX_TOTAL_WAL_BYTES: u64 = 512 * 1024 * 1024;

impl Storage {
    /// Opens (or creates) the database and checks it belongs to `genesis`; a new database
    /// gets the genesis state in one synced batch, a database of earlier versions has its
    /// receipts moved ([`migrate_receipts`]).
    pub fn open(path: &Path, genesis: &Genesis) -> Result<Storage, StorageError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Most of what the node keeps ends up in the last level, and is written there once
        // by compaction, off the commit path. zstd's entropy coding takes a receipt's hex
        // strings (hashes, keys) to about half: 28 % less for receipts than LZ4, 5 % for
        // blocks, whose signatures and keys do not compress.
        opts.set_bottommost_compression_type(rocksdb::DBCompressionType::Zstd);
        opts.set_keep_log_file_num(4);
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let tree_opts = tree_options(&mut opts)?;
        let sorted_opts = sorted_insert_options(&mut opts)?;
        let cfs = ALL_CFS.iter().map(|name| {
            let cf_opts = match *name {
                TREE_CF => &tree_opts,
                STATE_CF | Receipts::NAME => &sorted_opts,
                _ => &opts,
            };
            ColumnFamilyDescriptor::new(*name, cf_opts.clone())
        });
        let earlier = RETIRED_CFS.iter().chain([&LEGACY_RECEIPTS_CF]);
        let earlier: Vec<&str> = earlier.copied().collect();
        let mut db =
            DB::open_cf_descriptors(&opts, path, cfs.chain(existing_cfs(&opts, path, &earlier)))?;
        for name in RETIRED_CFS {
            if db.cf_handle(name).is_some() {
                db.drop_cf(name)?;
            }
        }
        let mut storage = Storage {
            db: Arc::new(db),
            tree_top: Arc::new(RwLock::new(TreeTop::empty())),
            state_cache: Arc::new(ReadCache::new(
                MAX_STATE_CACHE_ENTRIES,
                MAX_STATE_CACHE_BYTES,
                state_entry_bytes,
            )),
            logged: Arc::default(),
            last_commit_bytes: Arc::default(),
        };
        storage.init_genesis(genesis)?;
        storage.logged = Arc::new(Mutex::new(storage.scan_logged()?));
        // Only a data dir of this chain is changed; nothing else holds the database yet.
        let db = Arc::get_mut(&mut storage.db);
        migrate_receipts(db.ok_or(StorageError::MissingTable(LEGACY_RECEIPTS_CF))?)?;
        Ok(storage)
    }

    /// Flushes every table and compacts it: afterwards the files hold what the database
    /// keeps for good, without superseded state-tree nodes, the logged blocks of decided
    /// heights or the write-ahead log. RocksDB does this on its own over time; an operator
    /// (or a measurement of bytes kept per transaction) can ask for it now.
    ///
    /// The last level is rewritten too (not just moved there), so that it is all in the
    /// last level's compression.
    pub fn compact(&self) -> Result<(), StorageError> {
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::ForceOptimized);
        for name in ALL_CFS {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf)?;
            self.db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }

    fn init_genesis(&self, genesis: &Genesis) -> Result<(), StorageError> {
        let given = genesis.hash();
        match self.meta()? {
            Some(meta) if meta.genesis_hash == given => {
                return self.load_tree_top(genesis, meta.latest_height);
            }
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
        let initial = genesis.initial_state()?;
        let initial_changes: Changes = initial.into_iter().map(|(k, v)| (k, Some(v))).collect();
        let tree = self.state_update(&initial_changes)?;
        let mut top = self.write_top();
        self.put_tree(&mut batch, &top, &tree.writes)?;
        for (key, value) in &initial_changes {
            if let Some(value) = value {
                batch.put_cf(state_cf, key, value);
            }
        }
        let meta = ChainMeta {
            genesis_hash: given,
            latest_height: Height::GENESIS,
        };
        self.put::<Meta>(&mut batch, &MetaKey::Chain, &meta)?;
        self.write_synced(batch)?;
        top.apply(&tree.writes, Height::GENESIS);
        drop(top);
        self.applied(&initial_changes);
        Ok(())
    }

    /// Rebuilds the state tree's top from the stored nodes ([`TreeTop::rebuild`]) and
    /// checks its root against the state root at `height`, the latest committed; then
    /// deletes the top's inner nodes that earlier versions stored.
    fn load_tree_top(&self, genesis: &Genesis, height: Height) -> Result<(), StorageError> {
        let rebuilt = TreeTop::rebuild(stored_top(&self.db)?, height)?;
        // The genesis state is never empty, so its tree has a root.
        if rebuilt.top.root().is_none() {
            return Err(StorageError::NoStateTree);
        }
        let expected = self.state_root_at(genesis, height)?;
        if rebuilt.top.root_hash() != expected {
            return Err(StorageError::TreeMismatch {
                height,
                rebuilt: rebuilt.top.root_hash(),
                expected,
            });
        }
        *self.write_top() = rebuilt.top;
        if !rebuilt.stale.is_empty() {
            let cf = self.cf(TREE_CF)?;
            let mut batch = WriteBatch::default();
            for pos in &rebuilt.stale {
                batch.delete_cf(cf, pos.to_bytes());
            }
            self.write_synced(batch)?;
            let nodes = rebuilt.stale.len();
            tracing::info!(
                nodes,
                "deleted the stored inner nodes of the state tree's top"
            );
        }
        Ok(())
    }

    /// The state root of the committed block at `height`, or of the genesis state.
    fn state_root_at(&self, genesis: &Genesis, height: Height) -> Result<Hash, StorageError> {
        if height == Height::GENESIS {
            let initial = genesis.initial_state()?;
            let entries = initial.iter().map(|(k, v)| (&k[..], Some(&v[..])));
            return Ok(smt::update(&BTreeMap::new(), entries)?.root);
        }
        let header = self.get::<Headers>(&height)?;
        Ok(header
            .ok_or(StorageError::MissingHeader(height))?
            .state_root)
    }

    /// The tree's top for reading. A writer changes it only in [`TreeTop::apply`], which
    /// cannot panic, right after its database write: a poisoned lock still guards a top
    /// at the database's height.
    fn read_top(&self) -> RwLockReadGuard<'_, TreeTop> {
        self.tree_top.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_top(&self) -> RwLockWriteGuard<'_, TreeTop> {
        self.tree_top
            .write()
            .unwrap_or_else(PoisonError::into_inner)
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
        self.put_as::<T>(batch, key, value)
    }

    /// [`Storage::put`] of a value that encodes as a `T::Value` does (a borrowed form).
    fn put_as<T: Table>(
        &self,
        batch: &mut WriteBatch,
        key: &T::Key,
        value: &impl Encode,
    ) -> Result<(), StorageError> {
        batch.put_cf(self.cf(T::NAME)?, key.key_bytes(), codec::encode(value));
        Ok(())
    }

    fn write_synced(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.write(batch, Durability::Synced)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Synced);
        Ok(self.db.write_opt(batch, &opts)?)
    }

    /// Makes every write so far durable (the commits left `Deferred`).
    pub fn sync(&self) -> Result<(), StorageError> {
        Ok(self.db.flush_wal(true)?)
    }

    fn meta(&self) -> Result<Option<ChainMeta>, StorageError> {
        self.get::<Meta>(&MetaKey::Chain)
    }

    /// The height of the last committed block (0 before the first).
    pub fn latest_height(&self) -> Result<Height, StorageError> {
        Ok(self.meta()?.map_or(Height::GENESIS, |m| m.latest_height))
    }

    /// A committed transaction's receipt.
    pub fn receipt(&self, hash: &TxHash) -> Result<Option<Receipt>, StorageError> {
        let stored = self.get::<Receipts>(hash)?;
        Ok(stored.map(|stored| stored.into_receipt(*hash)))
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

    /// Writes a whole block atomically; durably (WAL synced before returning) unless its
    /// durability is `Deferred`.
    pub fn commit_block(&self, commit: &BlockCommit<'_>) -> Result<(), StorageError> {
        let height = commit.block.header.height;
        let mut top = self.write_top();
        let Some(mut meta) = self.meta()? else {
            return Err(StorageError::MissingTable(Meta::NAME));
        };
        if height != meta.latest_height.next() {
            return Err(StorageError::NotNext {
                tip: meta.latest_height,
                got: height,
            });
        }
        let last_bytes = self.last_commit_bytes.load(Ordering::Relaxed);
        let mut batch = WriteBatch::with_capacity_bytes(commit_batch_capacity(last_bytes));
        self.put::<Headers>(&mut batch, &height, &commit.block.header)?;
        let body = BlockBodyRef::of(commit.block);
        self.put_as::<Bodies>(&mut batch, &height, &body)?;
        self.put::<Commits>(&mut batch, &height, commit.certificate)?;
        let mut receipts: Vec<&Receipt> = commit.receipts.iter().collect();
        receipts.sort_unstable_by_key(|receipt| receipt.tx_hash);
        for receipt in receipts {
            let stored = StoredReceiptRef::of(receipt);
            self.put_as::<Receipts>(&mut batch, &receipt.tx_hash, &stored)?;
        }
        let state_cf = self.cf(STATE_CF)?;
        for (key, value) in commit.changes {
            match value {
                Some(value) => batch.put_cf(state_cf, key, value),
                None => batch.delete_cf(state_cf, key),
            }
        }
        self.put_tree(&mut batch, &top, commit.state_nodes)?;
        if let Some(set) = commit.next_validators {
            self.put::<SetChanges>(&mut batch, &height, set)?;
        }
        // Messages signed up to this height can no longer matter: the height is decided.
        let decided = self.logged_until(height);
        for (name, key) in decided.values().flatten() {
            batch.delete_cf(self.cf(name)?, key);
        }
        meta.latest_height = height;
        self.put::<Meta>(&mut batch, &MetaKey::Chain, &meta)?;
        // Other threads (the API, admission) read state while the batch is written.
        self.state_cache.forget(commit.changes.keys());
        self.last_commit_bytes
            .store(batch.size_in_bytes(), Ordering::Relaxed);
        self.write(batch, commit.durability)?;
        top.apply(commit.state_nodes, height);
        drop(top);
        self.applied(commit.changes);
        self.lock_logged().retain(|logged, _| *logged > height);
        Ok(())
    }

    /// Overwrites a state entry in place, as a failing disk might: for tests of what a
    /// node does when its own state is unreadable.
    #[cfg(test)]
    pub(crate) fn corrupt_state_for_tests(&self, key: &[u8], value: &[u8]) {
        let state_cf = self.cf(STATE_CF).unwrap();
        self.db.put_cf(state_cf, key, value).unwrap();
        self.state_cache.forget([key]);
    }

    fn lock_logged(&self) -> std::sync::MutexGuard<'_, LoggedKeys> {
        // The map is changed only after the write it mirrors: a panic cannot leave it
        // half-updated.
        self.logged.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The logged keys at heights up to `height`.
    fn logged_until(&self, height: Height) -> LoggedKeys {
        let logged = self.lock_logged();
        let until = logged.range(..=height);
        until.map(|(h, keys)| (*h, keys.clone())).collect()
    }

    /// Reads the keys of both logs, once on open.
    fn scan_logged(&self) -> Result<LoggedKeys, StorageError> {
        let mut logged = LoggedKeys::new();
        for name in [ConsensusLog::NAME, SignedBlocks::NAME] {
            for item in self.db.iterator_cf(self.cf(name)?, IteratorMode::Start) {
                let (key, _) = item?;
                let height = key_height(&key).ok_or_else(|| StorageError::Corrupt {
                    table: name,
                    source: CodecError::Malformed("key shorter than a height".into()),
                })?;
                logged.entry(height).or_default().push((name, key.to_vec()));
            }
        }
        Ok(logged)
    }

    /// Brings the state cache up to state writes that are now durable.
    fn applied(&self, changes: &Changes) {
        self.state_cache
            .apply(changes.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    /// Makes messages this validator signed durable (WAL synced) before they are sent:
    /// each entry is (height, sequence number at that height, message); `blocks` are the
    /// blocks they sign for that are not logged yet.
    pub fn log_signed(
        &self,
        entries: &[(Height, u32, &Message)],
        blocks: &[&Block],
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        let mut keys = Vec::with_capacity(entries.len() + blocks.len());
        for (height, seq, message) in entries {
            let key = (*height, *seq);
            self.put::<ConsensusLog>(&mut batch, &key, message)?;
            keys.push((*height, ConsensusLog::NAME, key.key_bytes()));
        }
        for block in blocks {
            let key = (block.header.height, block.id());
            self.put::<SignedBlocks>(&mut batch, &key, block)?;
            keys.push((key.0, SignedBlocks::NAME, key.key_bytes()));
        }
        self.write_synced(batch)?;
        let mut logged = self.lock_logged();
        for (height, name, key) in keys {
            logged.entry(height).or_default().push((name, key));
        }
        Ok(())
    }

    /// The blocks logged with this validator's messages at `height`.
    pub fn signed_blocks(&self, height: Height) -> Result<Vec<Block>, StorageError> {
        self.entries_at::<SignedBlocks>(height, Block::decode)
    }

    /// The messages logged at `height`, in the order they were logged.
    pub fn signed_at(&self, height: Height) -> Result<Vec<Message>, StorageError> {
        self.entries_at::<ConsensusLog>(height, codec::decode)
    }

    /// The values of table `T`, whose keys start with a height, at `height`, in key order.
    fn entries_at<T: Table>(
        &self,
        height: Height,
        decode: fn(&[u8]) -> Result<T::Value, CodecError>,
    ) -> Result<Vec<T::Value>, StorageError> {
        let logged = self
            .lock_logged()
            .get(&height)
            .is_some_and(|keys| keys.iter().any(|(name, _)| *name == T::NAME));
        if !logged {
            return Ok(Vec::new());
        }
        let prefix = height.key_bytes();
        let cf = self.cf(T::NAME)?;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(cf, &prefix) {
            let (key, value) = item?;
            if !key.starts_with(&prefix) {
                break;
            }
            let corrupt = |source| StorageError::Corrupt {
                table: T::NAME,
                source,
            };
            out.push(decode(&value).map_err(corrupt)?);
        }
        Ok(out)
    }

    /// The state tree after applying `changes` to the committed state: its root and the
    /// node writes to commit with them.
    pub fn state_update(&self, changes: &Changes) -> Result<TreeUpdate, StorageError> {
        let changes = changes.iter().map(|(k, v)| (&k[..], v.as_deref()));
        // One hold of the top for the whole update (both its threads), not one per read.
        let top = self.read_top();
        let tree = TreeView {
            top: &top,
            below: |pos| self.stored_node(pos),
        };
        Ok(smt::update(&tree, changes)?)
    }

    /// Adds what the database keeps of tree `writes` ([`TreeTop::stored`]) to `batch`;
    /// `top` is the committed one, the writes not yet applied to it.
    fn put_tree(
        &self,
        batch: &mut WriteBatch,
        top: &TreeTop,
        writes: &NodeWrites,
    ) -> Result<(), StorageError> {
        let cf = self.cf(TREE_CF)?;
        for (pos, node) in writes {
            match top.stored(*pos, *node) {
                Stored::Put(node) => batch.put_cf(cf, pos.to_bytes(), node.to_bytes()),
                Stored::Delete => batch.delete_cf(cf, pos.to_bytes()),
                Stored::Nothing => {}
            }
        }
        Ok(())
    }

    /// The changes of validator set from genesis up to and including `height`, in order.
    pub fn set_changes_until(
        &self,
        height: Height,
    ) -> Result<Vec<(Height, ValidatorSet)>, StorageError> {
        let cf = self.cf(SetChanges::NAME)?;
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (key, value) = item?;
            let at = <[u8; 8]>::try_from(&key[..]).map(|b| Height(u64::from_be_bytes(b)));
            let corrupt = |source| StorageError::Corrupt {
                table: SetChanges::NAME,
                source,
            };
            let at = at.map_err(|_| corrupt(CodecError::Malformed("height key".into())))?;
            if at > height {
                break;
            }
            out.push((at, codec::decode(&value).map_err(corrupt)?));
        }
        Ok(out)
    }

    /// A consistent read of the latest committed block and the state at it.
    pub fn snapshot(&self) -> StateSnapshot<'_> {
        // A commit changes the database only while it holds the top for writing.
        let top = self.read_top();
        StateSnapshot {
            storage: self,
            snapshot: self.db.snapshot(),
            height: top.height(),
        }
    }
}

/// The committed state at one instant: reads through it ignore later commits. The tree's
/// top is in memory, at the latest height only: a proof once a block was committed after
/// the snapshot fails with [`StorageError::StateMoved`].
pub struct StateSnapshot<'a> {
    storage: &'a Storage,
    snapshot: rocksdb::Snapshot<'a>,
    height: Height,
}

impl std::fmt::Debug for StateSnapshot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSnapshot").finish_non_exhaustive()
    }
}

impl StateSnapshot<'_> {
    fn get_raw(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.snapshot.get_cf(self.storage.cf(cf)?, key)?)
    }

    /// The height of the latest committed block when the snapshot was taken.
    pub fn height(&self) -> Height {
        self.height
    }

    /// State keys starting with `prefix`, at most `limit`, in key order.
    pub fn keys_with_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        let cf = self.storage.cf(STATE_CF)?;
        let mode = IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut keys = Vec::new();
        for item in self.snapshot.iterator_cf(cf, mode) {
            let (key, _) = item?;
            if !key.starts_with(prefix) || keys.len() >= limit {
                break;
            }
            keys.push(key.to_vec());
        }
        Ok(keys)
    }

    /// A state entry's value and its proof against the state root of the snapshot's
    /// block, while no later block is committed.
    pub fn prove(&self, key: &[u8]) -> Result<Proven, StorageError> {
        self.prove_in(&*self.top()?, key)
    }

    /// [`StateSnapshot::prove`] for each of `keys`, all read while one commit waits at
    /// most (a catching-up node commits blocks back to back).
    pub fn prove_all(&self, keys: &[Vec<u8>]) -> Result<Vec<Proven>, StorageError> {
        let top = self.top()?;
        keys.iter().map(|key| self.prove_in(&top, key)).collect()
    }

    /// The tree's top, if it is still at the snapshot's height.
    fn top(&self) -> Result<RwLockReadGuard<'_, TreeTop>, StorageError> {
        let top = self.storage.read_top();
        if top.height() != self.height {
            return Err(StorageError::StateMoved {
                read: self.height,
                now: top.height(),
            });
        }
        Ok(top)
    }

    fn prove_in(&self, top: &TreeTop, key: &[u8]) -> Result<Proven, StorageError> {
        let value = self.get_raw(STATE_CF, key)?;
        let tree = TreeView {
            top,
            below: |pos| self.stored_node(pos),
        };
        Ok((value, smt::prove(&tree, key)?))
    }

    fn stored_node(&self, pos: NodePos) -> Result<Option<Node>, SmtError> {
        let bytes = self
            .get_raw(TREE_CF, pos.to_bytes().as_ref())
            .map_err(|e| SmtError::Storage(e.to_string()))?;
        bytes.map(|b| Node::from_bytes(&b)).transpose()
    }
}

/// A state entry's value (none: absent) and its proof.
pub type Proven = (Option<Vec<u8>>, smt::StateProof);

impl Storage {
    pub fn without_filling(&self) -> NoFill<'_> {
        NoFill(self)
    }

    fn stored_node(&self, pos: NodePos) -> Result<Option<Node>, SmtError> {
        let cf = self
            .cf(TREE_CF)
            .map_err(|e| SmtError::Storage(e.to_string()))?;
        let bytes = self
            .db
            .get_pinned_cf(cf, pos.to_bytes())
            .map_err(|e| SmtError::Storage(e.to_string()))?;
        bytes.map(|b| Node::from_bytes(&b)).transpose()
    }

    fn stored_state(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self
            .cf(STATE_CF)
            .map_err(|e| StateError::Storage(e.to_string()))?;
        self.db
            .get_cf(cf, key)
            .map_err(|e| StateError::Storage(e.to_string()))
    }
}

/// State reads for what clients and peers ask ([`Storage::without_filling`]): answered
/// from the state cache when it holds the entry, but a miss does not fill it, so keys of
/// an outsider's choosing (an unknown sender, a random API key) cannot push out what
/// execution reads.
#[derive(Clone, Copy, Debug)]
pub struct NoFill<'a>(&'a Storage);

impl StateView for NoFill<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.0.state_cache.get(key) {
            Ok(value) => Ok(value),
            Err(_) => self.0.stored_state(key),
        }
    }
}

impl StateView for Storage {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let ticket = match self.state_cache.get(key) {
            Ok(value) => return Ok(value),
            Err(ticket) => ticket,
        };
        let value = self.stored_state(key)?;
        self.state_cache.fill(ticket, key.to_vec(), value.clone());
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn committed_tree_proves_entries_and_absences() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let storage = Storage::open(dir.path(), &genesis).unwrap();
        let initial: BTreeMap<Vec<u8>, Vec<u8>> = genesis.initial_state().unwrap();
        let root = smt::update(
            &BTreeMap::new(),
            initial.iter().map(|(k, v)| (&k[..], Some(&v[..]))),
        )
        .unwrap()
        .root;
        let snapshot = storage.snapshot();
        for (key, value) in &initial {
            let (got, proof) = snapshot.prove(key).unwrap();
            assert_eq!(got.as_ref(), Some(value));
            proof.verify(&root, key, Some(value)).unwrap();
        }
        let (got, proof) = snapshot.prove(b"no such key").unwrap();
        assert_eq!(got, None);
        proof.verify(&root, b"no such key", None).unwrap();
    }

    #[test]
    fn the_caches_agree_with_the_database_after_commits() {
        use crate::testing::{TestChain, create_account_tx};
        use bidchain_runtime::crypto::Keypair;
        use bidchain_runtime::time::Timestamp;
        use bidchain_runtime::tx::Role;

        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let hub = Keypair::from_seed_for_tests(1);
        let chain = TestChain::open(dir.path(), genesis.clone(), hub.clone()).unwrap();
        let mut nonce = 0;
        for block in 1..=6u64 {
            // Enough accounts that paths below the cached depth are rewritten too.
            let txs = (0..40)
                .map(|i| {
                    let new = Keypair::from_seed_for_tests(1_000 * block + i);
                    nonce += 1;
                    create_account_tx(&hub, nonce - 1, &new, Role::Bidder)
                })
                .collect();
            // Reads that fill the state cache with what this block is about to change.
            let storage = chain.chain.storage();
            for key in every_state_key(storage) {
                StateView::get(storage, &key).unwrap();
            }
            let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + block * 1_000);
            chain.commit(txs, time).unwrap();
        }
        let storage = chain.chain.storage().clone();
        let probe: Changes = [(b"probe".to_vec(), Some(b"value".to_vec()))]
            .into_iter()
            .collect();
        let warm_tree = storage.state_update(&probe).unwrap();
        let keys = every_state_key(&storage);
        let warm_state: Vec<_> = keys
            .iter()
            .map(|k| StateView::get(&storage, k).unwrap())
            .collect();
        drop((chain, storage));
        let cold = Storage::open(dir.path(), &genesis).unwrap();
        assert_eq!(warm_tree, cold.state_update(&probe).unwrap());
        let cold_state: Vec<_> = keys
            .iter()
            .map(|k| StateView::get(&cold, k).unwrap())
            .collect();
        assert_eq!(warm_state, cold_state);
    }

    /// A chain of `blocks` blocks of 40 new accounts each, on the hub's key (seed 1).
    fn chain_of_accounts(dir: &Path, genesis: &Genesis, blocks: u64) -> crate::testing::TestChain {
        use crate::testing::{TestChain, create_account_tx};
        use bidchain_runtime::crypto::Keypair;
        use bidchain_runtime::time::Timestamp;
        use bidchain_runtime::tx::Role;

        let hub = Keypair::from_seed_for_tests(1);
        let chain = TestChain::open(dir, genesis.clone(), hub.clone()).unwrap();
        for block in 1..=blocks {
            let txs = (0..40)
                .map(|i| {
                    let new = Keypair::from_seed_for_tests(1_000 * block + i);
                    create_account_tx(&hub, (block - 1) * 40 + i, &new, Role::Bidder)
                })
                .collect();
            let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + block * 1_000);
            chain.commit(txs, time).unwrap();
        }
        chain
    }

    fn latest_state_root(storage: &Storage) -> Hash {
        let height = storage.latest_height().unwrap();
        storage.get::<Headers>(&height).unwrap().unwrap().state_root
    }

    /// The tree's top is in memory at the latest height only: a proof from a snapshot taken
    /// before a commit is refused, one taken after proves against the new root.
    #[test]
    fn a_snapshot_proves_until_the_next_commit() {
        use bidchain_runtime::crypto::Keypair;
        use bidchain_runtime::time::Timestamp;

        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let chain = chain_of_accounts(dir.path(), &genesis, 2);
        let storage = chain.chain.storage();
        let key = every_state_key(storage).pop().unwrap();
        let before = storage.snapshot();
        let (value, proof) = before.prove(&key).unwrap();
        proof
            .verify(&latest_state_root(storage), &key, value.as_deref())
            .unwrap();
        let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + 3_000);
        let tx = crate::testing::create_account_tx(
            &Keypair::from_seed_for_tests(1),
            80,
            &Keypair::from_seed_for_tests(99),
            bidchain_runtime::tx::Role::Bidder,
        );
        chain.commit(vec![tx], time).unwrap();
        let moved = before.prove(&key).unwrap_err();
        assert!(matches!(
            moved,
            StorageError::StateMoved {
                read: Height(2),
                now: Height(3)
            }
        ));
        assert!(before.prove_all(&[key]).is_err());
        let keys = every_state_key(storage);
        let proven = storage.snapshot().prove_all(&keys).unwrap();
        assert_eq!(proven.len(), keys.len());
        for (key, (value, proof)) in keys.iter().zip(proven) {
            proof
                .verify(&latest_state_root(storage), key, value.as_deref())
                .unwrap();
        }
    }

    /// Earlier versions stored the top's inner nodes: they are deleted on open. A stored
    /// leaf that is not the committed state's stops the open.
    #[test]
    fn the_tree_top_is_rebuilt_from_the_stored_leaves_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        drop(chain_of_accounts(dir.path(), &genesis, 3));
        let stored_in_top = |storage: &Storage| -> Vec<(NodePos, Node)> {
            let stored = stored_top(&storage.db).unwrap().map(Result::unwrap);
            stored
                .filter(|(pos, _)| TreeTop::slot(*pos).is_some())
                .collect()
        };
        let put_node = |storage: &Storage, pos: NodePos, node: Node| {
            let cf = storage.cf(TREE_CF).unwrap();
            let (key, value) = (pos.to_bytes(), node.to_bytes());
            storage.db.put_cf(cf, key, value).unwrap();
        };

        let storage = Storage::open(dir.path(), &genesis).unwrap();
        let in_top = stored_in_top(&storage);
        assert!(
            in_top
                .iter()
                .all(|(_, node)| matches!(node, Node::Leaf { .. }))
        );
        let stale = NodePos::ROOT.child(true).child(false);
        put_node(&storage, stale, Node::Inner(Hash([7; 32])));
        drop(storage);
        let storage = Storage::open(dir.path(), &genesis).unwrap();
        assert_eq!(
            stored_in_top(&storage),
            in_top,
            "the stale inner node was kept"
        );

        let (pos, leaf) = in_top.first().copied().unwrap();
        let Node::Leaf { key, .. } = leaf else {
            unreachable!("only leaves are stored in the top");
        };
        let value = Hash([9; 32]);
        put_node(&storage, pos, Node::Leaf { key, value });
        drop(storage);
        let refused = Storage::open(dir.path(), &genesis).unwrap_err();
        assert!(
            matches!(
                refused,
                StorageError::TreeMismatch {
                    height: Height(3),
                    ..
                }
            ),
            "{refused}"
        );
    }

    /// What a validator logged at a height is deleted when the height is committed, and
    /// only then; the index of logged keys is rebuilt on open.
    #[test]
    fn a_commit_deletes_what_was_logged_up_to_its_height() {
        use crate::testing::TestChain;
        use bidchain_consensus::types::{Vote, sign_vote};
        use bidchain_consensus::{Message, VoteKind};
        use bidchain_runtime::crypto::Keypair;
        use bidchain_runtime::ids::Round;
        use bidchain_runtime::time::Timestamp;

        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let hub = Keypair::from_seed_for_tests(1);
        let vote = |height| {
            let vote = Vote {
                kind: VoteKind::Prevote,
                height,
                round: Round(0),
                block_id: None,
                validator_index: 0,
            };
            Message::Vote(sign_vote(vote, &genesis.chain_id, &hub))
        };
        let (one, two) = (vote(Height(1)), vote(Height(2)));
        let rows = |storage: &Storage| {
            let cf = storage.cf(ConsensusLog::NAME).unwrap();
            storage.db.iterator_cf(cf, IteratorMode::Start).count()
        };
        {
            let chain = TestChain::open(dir.path(), genesis.clone(), hub.clone()).unwrap();
            let storage = chain.chain.storage();
            let entries = [(Height(1), 0, &one), (Height(2), 0, &two)];
            storage.log_signed(&entries, &[]).unwrap();
            assert_eq!(storage.signed_at(Height(1)).unwrap(), vec![one.clone()]);
        }
        let chain = TestChain::open(dir.path(), genesis.clone(), hub.clone()).unwrap();
        let storage = chain.chain.storage();
        assert_eq!(rows(storage), 2);
        assert_eq!(storage.signed_at(Height(2)).unwrap(), vec![two.clone()]);
        let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + 1_000);
        chain.commit(vec![], time).unwrap();
        assert_eq!(rows(storage), 1, "height 1 is deleted from the table");
        assert!(storage.signed_at(Height(1)).unwrap().is_empty());
        assert_eq!(storage.signed_at(Height(2)).unwrap(), vec![two]);
    }

    /// A committed receipt is read back whole, its stored form 32 bytes shorter; a data
    /// dir whose receipts an earlier version stored whole has them moved on open.
    #[test]
    fn receipts_are_stored_without_their_hash_and_old_ones_are_moved() {
        use crate::testing::{TestChain, create_account_tx};
        use bidchain_runtime::crypto::Keypair;
        use bidchain_runtime::time::Timestamp;
        use bidchain_runtime::tx::Role;

        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let hub = Keypair::from_seed_for_tests(1);
        let receipt = {
            let chain = TestChain::open(dir.path(), genesis.clone(), hub.clone()).unwrap();
            let tx = create_account_tx(&hub, 0, &Keypair::from_seed_for_tests(9), Role::Bidder);
            let time = Timestamp::from_millis(genesis.genesis_time.as_millis() + 1_000);
            let mut receipts = chain.commit(vec![tx], time).unwrap();
            let receipt = receipts.pop().unwrap();
            let storage = chain.chain.storage();
            assert_eq!(
                storage.receipt(&receipt.tx_hash).unwrap().as_ref(),
                Some(&receipt)
            );
            let stored = storage.db.get_cf(
                storage.cf(Receipts::NAME).unwrap(),
                receipt.tx_hash.key_bytes(),
            );
            let stored = stored.unwrap().unwrap();
            assert_eq!(stored.len() + 32, codec::encode(&receipt).len());
            receipt
        };
        let hash = receipt.tx_hash;
        {
            // What an earlier version left: the receipt whole, in its own table.
            let mut opts = Options::default();
            opts.create_missing_column_families(true);
            let names = ALL_CFS.iter().chain(&["receipts"]);
            let db = DB::open_cf(&opts, dir.path(), names).unwrap();
            db.delete_cf(db.cf_handle(Receipts::NAME).unwrap(), hash.key_bytes())
                .unwrap();
            let legacy = db.cf_handle("receipts").unwrap();
            db.put_cf(legacy, hash.key_bytes(), codec::encode(&receipt))
                .unwrap();
            // More than one batch's worth.
            for n in 0..MIGRATION_BATCH_ENTRIES as u64 {
                let mut other = receipt.clone();
                other.tx_hash = TxHash(Hash::digest(&n.to_le_bytes()));
                let key = other.tx_hash.key_bytes();
                db.put_cf(legacy, key, codec::encode(&other)).unwrap();
            }
        }
        let storage = Storage::open(dir.path(), &genesis).unwrap();
        assert_eq!(storage.receipt(&hash).unwrap(), Some(receipt.clone()));
        let last = TxHash(Hash::digest(
            &(MIGRATION_BATCH_ENTRIES as u64 - 1).to_le_bytes(),
        ));
        let moved = storage.receipt(&last).unwrap().unwrap();
        assert_eq!((moved.tx_hash, moved.events), (last, receipt.events));
        let target = storage.cf(Receipts::NAME).unwrap();
        let count = storage.db.iterator_cf(target, IteratorMode::Start).count();
        assert_eq!(count, MIGRATION_BATCH_ENTRIES + 1);
        drop(storage);
        let left = DB::list_cf(&Options::default(), dir.path()).unwrap();
        assert!(
            !left.iter().any(|name| name == LEGACY_RECEIPTS_CF),
            "{left:?}"
        );
    }

    #[test]
    fn a_block_body_is_written_borrowed_and_read_back_whole() {
        use crate::testing::{TestChain, create_account_tx};
        use bidchain_runtime::crypto::Keypair;
        use bidchain_runtime::time::Timestamp;
        use bidchain_runtime::tx::Role;

        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let hub = Keypair::from_seed_for_tests(1);
        let chain = TestChain::open(dir.path(), genesis.clone(), hub.clone()).unwrap();
        for nonce in 0..2u64 {
            let tx = create_account_tx(
                &hub,
                nonce,
                &Keypair::from_seed_for_tests(50 + nonce),
                Role::Bidder,
            );
            let time =
                Timestamp::from_millis(genesis.genesis_time.as_millis() + (nonce + 1) * 1_000);
            chain.commit(vec![tx], time).unwrap();
        }
        let block = chain.chain.storage().block(Height(2)).unwrap().unwrap();
        assert_eq!(block.txs.len(), 1);
        assert!(block.last_commit.is_some());
        let owned = BlockBody {
            txs: block.txs.to_vec(),
            last_commit: block.last_commit.clone(),
        };
        assert_eq!(
            codec::encode(&BlockBodyRef::of(&block)),
            codec::encode(&owned)
        );
    }

    #[test]
    fn a_data_dir_with_a_retired_table_opens_and_loses_it() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = crate::testing::genesis_for(&[1], &[]);
        let tip = {
            let storage = Storage::open(dir.path(), &genesis).unwrap();
            storage.meta().unwrap()
        };
        {
            // What an earlier version left: its transaction index.
            let mut opts = Options::default();
            opts.create_missing_column_families(true);
            let names = ALL_CFS.iter().chain(&RETIRED_CFS);
            let db = DB::open_cf(&opts, dir.path(), names).unwrap();
            let txs = db.cf_handle("txs").unwrap();
            db.put_cf(txs, b"a transaction", b"its place").unwrap();
        }
        let storage = Storage::open(dir.path(), &genesis).unwrap();
        assert_eq!(storage.meta().unwrap(), tip);
        drop(storage);
        let left = DB::list_cf(&Options::default(), dir.path()).unwrap();
        assert!(!left.iter().any(|name| name == "txs"), "{left:?}");
        assert_eq!(left.len(), ALL_CFS.len() + 1, "{left:?}"); // and `default`
    }

    #[test]
    fn outsiders_reads_do_not_fill_the_state_cache() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), &crate::testing::genesis_for(&[1], &[])).unwrap();
        let cached = || storage.state_cache.len();
        let before = cached();
        assert_eq!(storage.without_filling().get(b"no such key").unwrap(), None);
        assert_eq!(cached(), before);
        assert_eq!(StateView::get(&storage, b"no such key").unwrap(), None);
        assert_eq!(cached(), before + 1);
        // A cached entry is still served.
        assert_eq!(storage.without_filling().get(b"no such key").unwrap(), None);
    }

    fn every_state_key(storage: &Storage) -> Vec<Vec<u8>> {
        storage
            .snapshot()
            .keys_with_prefix(b"", usize::MAX)
            .unwrap()
    }

    #[test]
    fn reopening_with_another_genesis_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(Storage::open(dir.path(), &crate::testing::genesis_for(&[1], &[])).unwrap());
        let err = Storage::open(dir.path(), &crate::testing::genesis_for(&[2], &[])).unwrap_err();
        assert!(matches!(err, StorageError::GenesisMismatch { .. }), "{err}");
    }
}
