//! The state commitment: a sparse Merkle tree over the SHA-256 of each state key, with
//! proofs of presence and of absence.
//!
//! The tree is canonical, a function of the set of entries alone (not of the order they
//! came in): the hash of the subtree of all keys whose hash starts with a given bit prefix
//! is
//! - [`EMPTY`] when no key falls in it,
//! - the leaf hash of its one entry when exactly one does (the leaf sits as high as it
//!   is alone, so a path is about log2(entries) long, not 256),
//! - `H(tag || left || right)` over its two halves otherwise.
//!
//! This is the shape of Diem's and Aptos' Jellyfish tree, binary instead of 16-ary. The
//! `jmt` crate was considered: it updates one key at a time and needs a versioned value
//! store besides the state table; a batch update here reads each touched node once.
//!
//! Nodes are kept by position (depth and prefix) behind [`NodeStore`]: an update reads
//! the nodes on the changed paths and returns the writes, which the caller commits with
//! the block. Nothing here does I/O.

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use crate::bounded::BoundedVec;
use crate::hash::Hash;

/// Bits of a key hash: the most levels a path can have.
pub const KEY_BITS: usize = 256;

/// The hash of an empty subtree, and the root of an empty state.
pub const EMPTY: Hash = Hash::ZERO;

/// Where a node sits: its depth and the first `depth` bits of every key hash below it
/// (later bits zero).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct NodePos {
    depth: u16,
    prefix: [u8; 32],
}

impl NodePos {
    pub const ROOT: NodePos = NodePos {
        depth: 0,
        prefix: [0; 32],
    };

    /// The left or right child position.
    pub fn child(self, right: bool) -> NodePos {
        let mut prefix = self.prefix;
        if right {
            set_bit(&mut prefix, usize::from(self.depth));
        }
        NodePos {
            depth: self.depth + 1,
            prefix,
        }
    }

    /// How many steps below the root.
    pub fn depth(self) -> u16 {
        self.depth
    }

    /// The position's number when the positions down to `max_depth` are numbered level by
    /// level, left to right (the root 0, its children 1 and 2, ...), so that they fit an
    /// array of `2^(max_depth + 1) - 1` slots. None below `max_depth`, or if `max_depth`
    /// is over [`MAX_NUMBERED_DEPTH`].
    pub fn level_order_index(self, max_depth: u16) -> Option<usize> {
        if self.depth > max_depth || max_depth > MAX_NUMBERED_DEPTH {
            return None;
        }
        let [a, b, c, d, ..] = self.prefix;
        // The prefix's first `depth` bits, as a number; `checked_shr` covers depth 0.
        let bits = u32::from_be_bytes([a, b, c, d])
            .checked_shr(32 - u32::from(self.depth))
            .unwrap_or(0);
        let first_of_level = (1_usize << self.depth) - 1;
        Some(first_of_level + usize::try_from(bits).ok()?)
    }

    /// Storage key: depth (big-endian u16) then the prefix bytes that hold its bits.
    pub fn to_bytes(self) -> NodeBytes<POS_BYTES> {
        let used = usize::from(self.depth).div_ceil(8);
        let mut out = NodeBytes::default();
        out.push(&self.depth.to_be_bytes());
        out.push(&self.prefix[..used]);
        out
    }

    /// The position [`NodePos::to_bytes`] wrote: refused unless it is exactly that
    /// encoding (a depth of at most [`KEY_BITS`], its prefix bytes, no bit set past it).
    pub fn from_bytes(bytes: &[u8]) -> Result<NodePos, SmtError> {
        let corrupt = || SmtError::BadPosition(bytes.len());
        let (depth, rest) = bytes.split_first_chunk::<2>().ok_or_else(corrupt)?;
        let depth = u16::from_be_bytes(*depth);
        if usize::from(depth) > KEY_BITS || rest.len() != usize::from(depth).div_ceil(8) {
            return Err(corrupt());
        }
        let mut pos = NodePos {
            depth,
            prefix: [0; 32],
        };
        pos.prefix[..rest.len()].copy_from_slice(rest);
        // The last byte's bits past the depth (none when the depth is whole bytes).
        let past_depth = 0xff_u8 >> (depth % 8);
        let last = rest.last().copied().unwrap_or(0);
        if depth % 8 != 0 && last & past_depth != 0 {
            return Err(corrupt());
        }
        Ok(pos)
    }
}

/// The deepest level [`NodePos::level_order_index`] numbers: its indices stay below
/// 2^32 on every target.
pub const MAX_NUMBERED_DEPTH: u16 = 30;

/// The longest storage key of a position: depth and a whole prefix.
pub const POS_BYTES: usize = 2 + 32;
/// The longest stored node: a leaf's key hash and value hash.
pub const NODE_BYTES: usize = 64;

/// A position's key or a node's bytes, kept on the stack: tree nodes are most of what a
/// block writes (about five per changed key), and each was two small heap buffers.
#[derive(Clone, Copy, Debug)]
pub struct NodeBytes<const MAX: usize> {
    bytes: [u8; MAX],
    len: usize,
}

impl<const MAX: usize> Default for NodeBytes<MAX> {
    fn default() -> Self {
        NodeBytes {
            bytes: [0; MAX],
            len: 0,
        }
    }
}

impl<const MAX: usize> NodeBytes<MAX> {
    /// Appends `part`; the callers' sizes are fixed, so an overflow is a bug here.
    fn push(&mut self, part: &[u8]) {
        let end = self.len + part.len();
        self.bytes[self.len..end].copy_from_slice(part);
        self.len = end;
    }
}

impl<const MAX: usize> AsRef<[u8]> for NodeBytes<MAX> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A stored node: an inner node's hash, or a leaf's key hash and value hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Node {
    Inner(Hash),
    Leaf { key: Hash, value: Hash },
}

impl Node {
    pub fn hash(&self) -> Hash {
        match self {
            Node::Inner(hash) => *hash,
            Node::Leaf { key, value } => leaf_hash(key, value),
        }
    }

    /// 32 bytes for an inner node, 64 for a leaf.
    pub fn to_bytes(&self) -> NodeBytes<NODE_BYTES> {
        let mut out = NodeBytes::default();
        match self {
            Node::Inner(hash) => out.push(&hash.0),
            Node::Leaf { key, value } => {
                out.push(&key.0);
                out.push(&value.0);
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Node, SmtError> {
        let hash = |b: &[u8]| <[u8; 32]>::try_from(b).map(Hash);
        match bytes.len() {
            32 => Ok(Node::Inner(hash(bytes).map_err(|_| SmtError::BadNode(32))?)),
            64 => Ok(Node::Leaf {
                key: hash(&bytes[..32]).map_err(|_| SmtError::BadNode(64))?,
                value: hash(&bytes[32..]).map_err(|_| SmtError::BadNode(64))?,
            }),
            len => Err(SmtError::BadNode(len)),
        }
    }
}

pub fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    Hash::domain(b"bidchain/smt/leaf\0", &[&key.0, &value.0])
}

pub fn inner_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::domain(b"bidchain/smt/inner\0", &[&left.0, &right.0])
}

/// The tree's path for a state key.
pub fn key_hash(key: &[u8]) -> Hash {
    Hash::digest(key)
}

pub fn value_hash(value: &[u8]) -> Hash {
    Hash::digest(value)
}

fn bit(hash: &Hash, index: usize) -> bool {
    hash.0[index / 8] & (0x80 >> (index % 8)) != 0
}

fn set_bit(bytes: &mut [u8; 32], index: usize) {
    bytes[index / 8] |= 0x80 >> (index % 8);
}

/// Why the tree could not be read or a proof does not hold.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmtError {
    #[error("tree storage failed: {0}")]
    Storage(String),
    #[error("stored tree node of {0} bytes is corrupt")]
    BadNode(usize),
    #[error("stored tree position of {0} bytes is corrupt")]
    BadPosition(usize),
    #[error("tree path runs deeper than {KEY_BITS} levels: the stored tree is corrupt")]
    TooDeep,
    #[error("the proof shows the key is absent, but a value was claimed")]
    ClaimedButAbsent,
    #[error("the proof shows the key holds a value, but its absence was claimed")]
    ClaimedAbsentButPresent,
    #[error("the proof's leaf is for another key")]
    OtherKey,
    #[error("the proof's leaf holds another value")]
    OtherValue,
    #[error("the proof's leaf for another key is not on this key's path")]
    LeafOffPath,
    #[error("the proof leads to state root {computed}, not {expected}")]
    RootMismatch { computed: Hash, expected: Hash },
}

/// Read access to the committed tree.
pub trait NodeStore {
    fn node(&self, pos: NodePos) -> Result<Option<Node>, SmtError>;
}

impl NodeStore for BTreeMap<NodePos, Node> {
    fn node(&self, pos: NodePos) -> Result<Option<Node>, SmtError> {
        Ok(self.get(&pos).copied())
    }
}

/// What an update writes: a node per position, `None` deleting one.
pub type NodeWrites = BTreeMap<NodePos, Option<Node>>;

/// The new root and the node writes that make it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeUpdate {
    pub root: Hash,
    pub writes: NodeWrites,
}

/// A subtree after an update, before it is placed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Sub {
    Empty,
    Node(Node),
}

impl Sub {
    fn hash(&self) -> Hash {
        match self {
            Sub::Empty => EMPTY,
            Sub::Node(node) => node.hash(),
        }
    }

    fn from_stored(node: Option<Node>) -> Sub {
        node.map_or(Sub::Empty, Sub::Node)
    }

    fn is_leaf(&self) -> bool {
        matches!(self, Sub::Node(Node::Leaf { .. }))
    }
}

/// One change: a key hash and its new value hash (`None` deletes).
type Change = (Hash, Option<Hash>);

/// Applies `changes` (state key, new value or `None` to delete) to the tree in `store`.
pub fn update<'a>(
    store: &(impl NodeStore + Sync),
    changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Result<TreeUpdate, SmtError> {
    update_with(store, changes, PARALLEL_MIN_CHANGES)
}

/// From this many changes, [`update`] does the root's two halves on two threads: hashing
/// and reading the paths below the root was a seventh of a node's consensus thread while
/// it caught up, and the halves share nothing. Fewer changes are not worth a thread.
const PARALLEL_MIN_CHANGES: usize = 256;

/// [`update`], with the root's halves on two threads from `parallel_from` changes.
fn update_with<'a>(
    store: &(impl NodeStore + Sync),
    changes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    parallel_from: usize,
) -> Result<TreeUpdate, SmtError> {
    // Sorted by key hash, the changes under any node are one contiguous run.
    let sorted: BTreeMap<Hash, Option<Hash>> = changes
        .into_iter()
        .map(|(key, value)| (key_hash(key), value.map(value_hash)))
        .collect();
    let sorted: Vec<Change> = sorted.into_iter().collect();
    let mut writes = NodeWrites::new();
    let old = store.node(NodePos::ROOT)?;
    let apart = sorted.len() >= parallel_from;
    let new = update_at(store, NodePos::ROOT, old, &sorted, apart, &mut writes)?;
    place(&mut writes, NodePos::ROOT, old, new);
    Ok(TreeUpdate {
        root: new.hash(),
        writes,
    })
}

/// One subtree's update: `pos`, what was stored there, its changes.
type Half<'c> = (NodePos, Option<Node>, &'c [Change]);

/// [`update_at`] on two halves, the left on a scoped thread of its own. The writes are
/// the same as on one thread: the halves write disjoint positions.
fn update_apart(
    store: &(impl NodeStore + Sync),
    [
        (left_pos, left_old, left_changes),
        (right_pos, right_old, right_changes),
    ]: [Half<'_>; 2],
    writes: &mut NodeWrites,
) -> Result<(Sub, Sub), SmtError> {
    let (left, right) = std::thread::scope(|scope| {
        let left = scope.spawn(|| {
            let mut writes = NodeWrites::new();
            update_at(store, left_pos, left_old, left_changes, false, &mut writes)
                .map(|sub| (sub, writes))
        });
        let right = update_at(store, right_pos, right_old, right_changes, false, writes);
        let left = left
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (left, right)
    });
    let (left, left_writes) = left?;
    writes.extend(left_writes);
    Ok((left, right?))
}

/// Records the node now at `pos` if it differs from what was stored there.
fn place(writes: &mut NodeWrites, pos: NodePos, old: Option<Node>, new: Sub) {
    let new = match new {
        Sub::Empty => None,
        Sub::Node(node) => Some(node),
    };
    if new != old {
        writes.insert(pos, new);
    }
}

/// The subtree at `pos` after `changes`; `apart`: its halves on two threads, if it is an
/// inner node.
fn update_at(
    store: &(impl NodeStore + Sync),
    pos: NodePos,
    old: Option<Node>,
    changes: &[Change],
    apart: bool,
    writes: &mut NodeWrites,
) -> Result<Sub, SmtError> {
    if changes.is_empty() {
        return Ok(Sub::from_stored(old));
    }
    if usize::from(pos.depth) >= KEY_BITS {
        return Err(SmtError::TooDeep);
    }
    match old {
        // Nothing is stored below an empty subtree or a leaf: rebuild from the entries.
        None => build(pos, &apply(&[], changes), writes),
        Some(Node::Leaf { key, value }) => build(pos, &apply(&[(key, value)], changes), writes),
        Some(Node::Inner(_)) => {
            let depth = usize::from(pos.depth);
            let split = changes.partition_point(|(key, _)| !bit(key, depth));
            let (left_changes, right_changes) = changes.split_at(split);
            let (left_pos, right_pos) = (pos.child(false), pos.child(true));
            let (left_old, right_old) = (store.node(left_pos)?, store.node(right_pos)?);
            let (left, right) = if apart {
                let halves = [
                    (left_pos, left_old, left_changes),
                    (right_pos, right_old, right_changes),
                ];
                update_apart(store, halves, writes)?
            } else {
                let left = update_at(store, left_pos, left_old, left_changes, false, writes)?;
                let right = update_at(store, right_pos, right_old, right_changes, false, writes)?;
                (left, right)
            };
            Ok(join(
                writes,
                [(left_pos, left_old, left), (right_pos, right_old, right)],
            ))
        }
    }
}

/// A node over two updated halves: a lone leaf moves up (its old place is cleared), else
/// both halves are placed below a new inner node.
fn join(writes: &mut NodeWrites, halves: [(NodePos, Option<Node>, Sub); 2]) -> Sub {
    let [(left_pos, left_old, left), (right_pos, right_old, right)] = halves;
    let merged = match (left, right) {
        (Sub::Empty, Sub::Empty) => Sub::Empty,
        (lone, Sub::Empty) | (Sub::Empty, lone) if lone.is_leaf() => lone,
        _ => {
            place(writes, left_pos, left_old, left);
            place(writes, right_pos, right_old, right);
            return Sub::Node(Node::Inner(inner_hash(&left.hash(), &right.hash())));
        }
    };
    place(writes, left_pos, left_old, Sub::Empty);
    place(writes, right_pos, right_old, Sub::Empty);
    merged
}

/// The entries of `existing` (sorted) with `changes` (sorted) applied.
fn apply(existing: &[(Hash, Hash)], changes: &[Change]) -> Vec<(Hash, Hash)> {
    let mut entries: BTreeMap<Hash, Hash> = existing.iter().copied().collect();
    for (key, value) in changes {
        match value {
            Some(value) => entries.insert(*key, *value),
            None => entries.remove(key),
        };
    }
    entries.into_iter().collect()
}

/// The subtree at `pos` over sorted `entries`, where nothing is stored below `pos` yet.
fn build(pos: NodePos, entries: &[(Hash, Hash)], writes: &mut NodeWrites) -> Result<Sub, SmtError> {
    match entries {
        [] => Ok(Sub::Empty),
        [(key, value)] => Ok(Sub::Node(Node::Leaf {
            key: *key,
            value: *value,
        })),
        _ => {
            let depth = usize::from(pos.depth);
            if depth >= KEY_BITS {
                return Err(SmtError::TooDeep);
            }
            let split = entries.partition_point(|(key, _)| !bit(key, depth));
            let (left_pos, right_pos) = (pos.child(false), pos.child(true));
            let left = build(left_pos, &entries[..split], writes)?;
            let right = build(right_pos, &entries[split..], writes)?;
            place(writes, left_pos, None, left);
            place(writes, right_pos, None, right);
            Ok(Sub::Node(Node::Inner(inner_hash(
                &left.hash(),
                &right.hash(),
            ))))
        }
    }
}

/// A proof that a key holds a value, or holds none, under a state root: the sibling
/// hashes from the root down, and the leaf the path ends at (none: an empty subtree).
#[derive(Clone, PartialEq, Eq, Debug, Encode, Decode)]
pub struct StateProof {
    pub siblings: BoundedVec<Hash, KEY_BITS>,
    /// The leaf the path ends at: (key hash, value hash).
    pub leaf: Option<(Hash, Hash)>,
}

/// The proof for `key` in the tree in `store`.
pub fn prove(store: &impl NodeStore, key: &[u8]) -> Result<StateProof, SmtError> {
    let path = key_hash(key);
    let mut pos = NodePos::ROOT;
    let mut siblings = BoundedVec::empty();
    let mut node = store.node(pos)?;
    while let Some(Node::Inner(_)) = node {
        if usize::from(pos.depth) >= KEY_BITS {
            return Err(SmtError::TooDeep);
        }
        let right = bit(&path, usize::from(pos.depth));
        let sibling = store.node(pos.child(!right))?;
        siblings
            .push(Sub::from_stored(sibling).hash())
            .map_err(|_| SmtError::TooDeep)?;
        pos = pos.child(right);
        node = store.node(pos)?;
    }
    let leaf = match node {
        Some(Node::Leaf { key, value }) => Some((key, value)),
        _ => None,
    };
    Ok(StateProof { siblings, leaf })
}

impl StateProof {
    /// Checks that under `root`, `key` holds `value` (`None`: holds nothing).
    pub fn verify(&self, root: &Hash, key: &[u8], value: Option<&[u8]>) -> Result<(), SmtError> {
        let path = key_hash(key);
        let mut hash = self.end_hash(&path, value)?;
        for (depth, sibling) in self.siblings.iter().enumerate().rev() {
            hash = if bit(&path, depth) {
                inner_hash(sibling, &hash)
            } else {
                inner_hash(&hash, sibling)
            };
        }
        if hash != *root {
            return Err(SmtError::RootMismatch {
                computed: hash,
                expected: *root,
            });
        }
        Ok(())
    }

    /// The hash the path ends at, after checking the leaf against the claim.
    fn end_hash(&self, path: &Hash, value: Option<&[u8]>) -> Result<Hash, SmtError> {
        match (value, self.leaf) {
            (Some(_), None) => Err(SmtError::ClaimedButAbsent),
            (None, None) => Ok(EMPTY),
            (Some(value), Some((key, held))) => {
                if key != *path {
                    return Err(SmtError::OtherKey);
                }
                if held != value_hash(value) {
                    return Err(SmtError::OtherValue);
                }
                Ok(leaf_hash(&key, &held))
            }
            (None, Some((key, held))) => {
                if key == *path {
                    return Err(SmtError::ClaimedAbsentButPresent);
                }
                // Another key's leaf proves absence only where this key's path ends too.
                if (0..self.siblings.len()).any(|depth| bit(&key, depth) != bit(path, depth)) {
                    return Err(SmtError::LeafOffPath);
                }
                Ok(leaf_hash(&key, &held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical root straight from the definition, over (key hash, value hash).
    fn reference_root(entries: &[(Hash, Hash)], depth: usize) -> Hash {
        match entries {
            [] => EMPTY,
            [(key, value)] => leaf_hash(key, value),
            _ => {
                let split = entries.partition_point(|(key, _)| !bit(key, depth));
                inner_hash(
                    &reference_root(&entries[..split], depth + 1),
                    &reference_root(&entries[split..], depth + 1),
                )
            }
        }
    }

    fn inner_count(entries: &[(Hash, Hash)], depth: usize) -> usize {
        if entries.len() < 2 {
            return 0;
        }
        let split = entries.partition_point(|(key, _)| !bit(key, depth));
        1 + inner_count(&entries[..split], depth + 1) + inner_count(&entries[split..], depth + 1)
    }

    fn apply_writes(store: &mut BTreeMap<NodePos, Node>, writes: &NodeWrites) {
        for (pos, node) in writes {
            match node {
                Some(node) => store.insert(*pos, *node),
                None => store.remove(pos),
            };
        }
    }

    /// A small deterministic generator (xorshift), so failures replay.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn stored_bytes_of_nodes_and_positions() {
        let (key, value) = (Hash([1; 32]), Hash([2; 32]));
        for node in [Node::Inner(key), Node::Leaf { key, value }] {
            assert_eq!(Node::from_bytes(node.to_bytes().as_ref()), Ok(node));
        }
        assert_eq!(NodePos::ROOT.to_bytes().as_ref(), &[0, 0]);
        let deep = NodePos::ROOT.child(true).child(false).child(true);
        assert_eq!(deep.to_bytes().as_ref(), &[0, 3, 0b1010_0000]);
        let mut bottom = NodePos::ROOT;
        for _ in 0..KEY_BITS {
            bottom = bottom.child(true);
        }
        let mut full = vec![1, 0];
        full.extend([0xff; 32]);
        assert_eq!(bottom.to_bytes().as_ref(), &full[..]);
        assert_eq!(full.len(), POS_BYTES);
        for pos in [NodePos::ROOT, deep, bottom] {
            assert_eq!(NodePos::from_bytes(pos.to_bytes().as_ref()), Ok(pos));
        }
        // A bit past the depth, a missing or extra prefix byte, a depth past the keys.
        for bad in [&[0, 3, 0b1011_0000][..], &[0, 3], &[0, 3, 0, 0], &[1, 1]] {
            let refused = Err(SmtError::BadPosition(bad.len()));
            assert_eq!(NodePos::from_bytes(bad), refused, "{bad:?}");
        }
    }

    #[test]
    fn level_order_indices_number_the_upper_levels_without_gaps() {
        let max_depth = 4;
        let mut level = vec![NodePos::ROOT];
        let mut indices = Vec::new();
        for _ in 0..=max_depth {
            indices.extend(level.iter().map(|pos| pos.level_order_index(max_depth)));
            level = level
                .iter()
                .flat_map(|pos| [pos.child(false), pos.child(true)])
                .collect();
        }
        let expected: Vec<Option<usize>> = (0..(1 << (max_depth + 1)) - 1).map(Some).collect();
        assert_eq!(indices, expected);
        assert!(
            level
                .iter()
                .all(|pos| pos.level_order_index(max_depth).is_none())
        );
        let mut deepest = NodePos::ROOT;
        for _ in 0..MAX_NUMBERED_DEPTH {
            deepest = deepest.child(true);
        }
        let last = (1 << (MAX_NUMBERED_DEPTH + 1)) - 2;
        assert_eq!(deepest.level_order_index(MAX_NUMBERED_DEPTH), Some(last));
        assert_eq!(deepest.level_order_index(MAX_NUMBERED_DEPTH + 1), None);
    }

    #[test]
    fn batched_updates_match_the_definition_and_store_only_live_nodes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut store = BTreeMap::new();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for round in 0..60 {
            let mut batch: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            for _ in 0..(rng.next() % 40) {
                let key = (rng.next() % 200).to_le_bytes().to_vec();
                let value =
                    (!rng.next().is_multiple_of(3)).then(|| rng.next().to_le_bytes().to_vec());
                batch.insert(key, value);
            }
            let update = update(&store, batch.iter().map(|(k, v)| (&k[..], v.as_deref()))).unwrap();
            apply_writes(&mut store, &update.writes);
            for (key, value) in batch {
                match value {
                    Some(value) => model.insert(key, value),
                    None => model.remove(&key),
                };
            }
            let mut hashed: Vec<(Hash, Hash)> = model
                .iter()
                .map(|(k, v)| (key_hash(k), value_hash(v)))
                .collect();
            hashed.sort();
            assert_eq!(update.root, reference_root(&hashed, 0), "round {round}");
            // One leaf per entry and one inner node per subtree of two or more: no stale
            // node is left behind.
            let leaves = store
                .values()
                .filter(|n| matches!(n, Node::Leaf { .. }))
                .count();
            assert_eq!(leaves, model.len(), "round {round}");
            assert_eq!(
                store.len() - leaves,
                inner_count(&hashed, 0),
                "round {round}"
            );
        }
    }

    type Batch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

    /// Big batches take the two-thread path: the same root and writes as one thread,
    /// including when a half empties or shrinks to one leaf.
    #[test]
    fn a_batch_updated_in_two_halves_matches_one_thread() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut store = BTreeMap::new();
        let keys: Vec<Vec<u8>> = (0u32..3_000).map(|i| i.to_le_bytes().to_vec()).collect();
        let mut batches: Vec<Batch> = vec![
            keys.iter().map(|k| (k.clone(), Some(k.clone()))).collect(),
            (0..PARALLEL_MIN_CHANGES * 2)
                .map(|_| {
                    let key = keys[usize::try_from(rng.next() % 3_000).unwrap()].clone();
                    let value =
                        (!rng.next().is_multiple_of(3)).then(|| rng.next().to_le_bytes().to_vec());
                    (key, value)
                })
                .collect(),
        ];
        // Every key of the left half deleted, then all but one of the right half.
        let left = |k: &Vec<u8>| !bit(&key_hash(k), 0);
        batches.push(
            keys.iter()
                .filter(|k| left(k))
                .map(|k| (k.clone(), None))
                .collect(),
        );
        batches.push(
            keys.iter()
                .filter(|k| !left(k))
                .skip(1)
                .map(|k| (k.clone(), None))
                .collect(),
        );
        for (round, batch) in batches.iter().enumerate() {
            assert!(batch.len() >= PARALLEL_MIN_CHANGES, "round {round}");
            let changes = || batch.iter().map(|(k, v)| (&k[..], v.as_deref()));
            let expected = update_with(&store, changes(), usize::MAX).unwrap();
            let got = update(&store, changes()).unwrap();
            assert_eq!(got, expected, "round {round}");
            apply_writes(&mut store, &got.writes);
        }
        assert_eq!(store.len(), 1, "one leaf is left, at the root");
    }

    #[test]
    fn proofs_of_presence_and_absence_verify_and_refuse_false_claims() {
        let mut store = BTreeMap::new();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0u32..300)
            .map(|i| (i.to_le_bytes().to_vec(), (i * 7).to_le_bytes().to_vec()))
            .collect();
        let update = update(&store, entries.iter().map(|(k, v)| (&k[..], Some(&v[..])))).unwrap();
        apply_writes(&mut store, &update.writes);
        let root = update.root;
        for (key, value) in &entries {
            let proof = prove(&store, key).unwrap();
            proof.verify(&root, key, Some(value)).unwrap();
            assert_eq!(
                proof.verify(&root, key, Some(b"other")),
                Err(SmtError::OtherValue)
            );
            assert_eq!(
                proof.verify(&root, key, None),
                Err(SmtError::ClaimedAbsentButPresent)
            );
        }
        for i in 300u32..400 {
            let key = i.to_le_bytes();
            let proof = prove(&store, &key).unwrap();
            proof.verify(&root, &key, None).unwrap();
            assert!(proof.verify(&root, &key, Some(b"x")).is_err());
        }
        // A presence proof of one key does not prove another key absent.
        let proof = prove(&store, &entries[0].0).unwrap();
        assert!(proof.verify(&root, &entries[1].0, None).is_err());
        // A changed sibling breaks the proof.
        let mut bad = prove(&store, &entries[5].0).unwrap();
        let mut siblings = bad.siblings.to_vec();
        siblings[0].0[0] ^= 1;
        bad.siblings = BoundedVec::new(siblings).unwrap();
        assert!(matches!(
            bad.verify(&root, &entries[5].0, Some(&entries[5].1)),
            Err(SmtError::RootMismatch { .. })
        ));
    }

    #[test]
    fn deleting_everything_empties_the_store() {
        let mut store = BTreeMap::new();
        let keys: Vec<Vec<u8>> = (0u8..50).map(|i| vec![i]).collect();
        let up = update(&store, keys.iter().map(|k| (&k[..], Some(&b"v"[..])))).unwrap();
        apply_writes(&mut store, &up.writes);
        let down = update(&store, keys.iter().map(|k| (&k[..], None))).unwrap();
        apply_writes(&mut store, &down.writes);
        assert_eq!(down.root, EMPTY);
        assert!(store.is_empty(), "{store:?}");
        assert_eq!(
            prove(&store, b"x").unwrap().verify(&EMPTY, b"x", None),
            Ok(())
        );
    }
}
