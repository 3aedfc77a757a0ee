//! The state tree's upper levels, held whole in memory and never written as inner nodes.
//!
//! Every block rewrites the path from the root to each key it changes. With the tree in
//! the database, that was some ten node writes per changed key, and inserting them into
//! RocksDB's memtable was most of a block's commit. The levels down to [`TOP_DEPTH`]
//! are a function of what is stored below them and of their own leaves, so the database
//! keeps only those leaves and every node below, and the inner nodes are rebuilt on open
//! ([`TreeTop::rebuild`]). The caller checks the rebuilt root against the latest header.

use bidchain_runtime::hash::Hash;
use bidchain_runtime::ids::Height;
use bidchain_runtime::smt::{self, Node, NodePos, NodeWrites};

/// The deepest level held here: 2^19 - 1 positions of 65 bytes (34 MB per node). A state
/// of a few hundred thousand keys has most of its inner nodes above it.
pub const TOP_DEPTH: u16 = 18;
const TOP_SLOTS: usize = (1 << (TOP_DEPTH + 1)) - 1;
/// The stored level right below the top: its nodes' hashes are what the top is built on.
pub const FRONTIER_DEPTH: u16 = TOP_DEPTH + 1;
const FRONTIER_NODES: usize = 1 << FRONTIER_DEPTH;
const _: () = assert!(FRONTIER_DEPTH <= smt::MAX_NUMBERED_DEPTH);

/// The nodes down to [`TOP_DEPTH`] of the committed tree, in level order.
#[derive(Debug)]
pub struct TreeTop {
    nodes: Vec<Option<Node>>,
    /// The block whose state the nodes are of.
    height: Height,
}

/// What the database does for a write at a position of the top.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stored {
    Put(Node),
    Delete,
    /// An inner node, or an empty position that held no leaf: nothing is stored.
    Nothing,
}

/// A top rebuilt from the stored nodes.
#[derive(Debug)]
pub struct Rebuilt {
    pub top: TreeTop,
    /// Inner nodes stored at top positions (by earlier versions): no longer read.
    pub stale: Vec<NodePos>,
}

impl TreeTop {
    /// A top with no nodes, at genesis before its state is written.
    pub fn empty() -> TreeTop {
        TreeTop {
            nodes: vec![None; TOP_SLOTS],
            height: Height::GENESIS,
        }
    }

    /// The position's slot, if it is in the top.
    pub fn slot(pos: NodePos) -> Option<usize> {
        pos.level_order_index(TOP_DEPTH)
    }

    /// The node at a slot of [`TreeTop::slot`]; `None` for an empty position.
    pub fn node(&self, slot: usize) -> Option<Node> {
        self.nodes.get(slot).copied().flatten()
    }

    pub fn root(&self) -> Option<Node> {
        self.node(0)
    }

    pub fn height(&self) -> Height {
        self.height
    }

    /// What the database keeps of a tree write, `new` at `pos`, before it is applied
    /// here. Below the top, every node. In the top, leaves only: a leaf that is replaced
    /// by an inner node or removed is deleted.
    pub fn stored(&self, pos: NodePos, new: Option<Node>) -> Stored {
        let Some(slot) = Self::slot(pos) else {
            return new.map_or(Stored::Delete, Stored::Put);
        };
        match (new, self.node(slot)) {
            (Some(leaf @ Node::Leaf { .. }), _) => Stored::Put(leaf),
            (_, Some(Node::Leaf { .. })) => Stored::Delete,
            _ => Stored::Nothing,
        }
    }

    /// Takes in a block's tree writes once they are in the database.
    pub fn apply(&mut self, writes: &NodeWrites, height: Height) {
        for (pos, node) in writes {
            if let Some(slot) = Self::slot(*pos).and_then(|slot| self.nodes.get_mut(slot)) {
                *slot = *node;
            }
        }
        self.height = height;
    }

    /// The top over `stored`, the database's nodes down to [`FRONTIER_DEPTH`] (deeper
    /// ones are ignored), as the state at `height`; the first error reading them stops it.
    pub fn rebuild<E>(
        stored: impl IntoIterator<Item = Result<(NodePos, Node), E>>,
        height: Height,
    ) -> Result<Rebuilt, E> {
        let mut nodes = vec![None; TOP_SLOTS];
        let mut frontier = vec![smt::EMPTY; FRONTIER_NODES];
        let mut stale = Vec::new();
        for entry in stored {
            let (pos, node) = entry?;
            match (Self::slot(pos), node) {
                (Some(slot), Node::Leaf { .. }) => nodes[slot] = Some(node),
                (Some(_), Node::Inner(_)) => stale.push(pos),
                (None, _) => {
                    if let Some(index) = frontier_index(pos) {
                        frontier[index] = node.hash();
                    }
                }
            }
        }
        // Level order puts a slot's children (2s + 1, 2s + 2) after it: going backwards,
        // they are built first. Past the last slot, the children are the frontier's.
        for slot in (0..TOP_SLOTS).rev() {
            if nodes[slot].is_some() {
                continue;
            }
            let child = |index: usize| match index.checked_sub(TOP_SLOTS) {
                Some(below) => frontier[below],
                None => nodes[index].map_or(smt::EMPTY, |node| node.hash()),
            };
            let (left, right) = (child(2 * slot + 1), child(2 * slot + 2));
            if (left, right) != (smt::EMPTY, smt::EMPTY) {
                nodes[slot] = Some(Node::Inner(smt::inner_hash(&left, &right)));
            }
        }
        Ok(Rebuilt {
            top: TreeTop { nodes, height },
            stale,
        })
    }

    /// The root's hash ([`smt::EMPTY`] for an empty tree).
    pub fn root_hash(&self) -> Hash {
        self.root().map_or(smt::EMPTY, |node| node.hash())
    }
}

/// The tree as `smt` reads it: the top from memory, the stored nodes below it through
/// `below` (the live database, or a snapshot at the top's height).
pub struct TreeView<'a, F> {
    pub top: &'a TreeTop,
    pub below: F,
}

impl<F> std::fmt::Debug for TreeView<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeView")
            .field("height", &self.top.height)
            .finish_non_exhaustive()
    }
}

impl<F> smt::NodeStore for TreeView<'_, F>
where
    F: Fn(NodePos) -> Result<Option<Node>, smt::SmtError>,
{
    fn node(&self, pos: NodePos) -> Result<Option<Node>, smt::SmtError> {
        match TreeTop::slot(pos) {
            Some(slot) => Ok(self.top.node(slot)),
            None => (self.below)(pos),
        }
    }
}

/// A frontier position's index in its level.
fn frontier_index(pos: NodePos) -> Option<usize> {
    if pos.depth() != FRONTIER_DEPTH {
        return None;
    }
    pos.level_order_index(FRONTIER_DEPTH)?
        .checked_sub(TOP_SLOTS)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::convert::Infallible;

    use super::*;

    fn rebuild(stored: impl IntoIterator<Item = (NodePos, Node)>, height: Height) -> Rebuilt {
        let stored = stored.into_iter().map(Ok::<_, Infallible>);
        let Ok(rebuilt) = TreeTop::rebuild(stored, height);
        rebuilt
    }

    /// The database's side of a tree: what a commit would store, given the top.
    fn store(db: &mut BTreeMap<NodePos, Node>, top: &TreeTop, writes: &NodeWrites) {
        for (pos, node) in writes {
            match top.stored(*pos, *node) {
                Stored::Put(node) => db.insert(*pos, node),
                Stored::Delete => db.remove(pos),
                Stored::Nothing => None,
            };
        }
    }

    fn key(i: u32) -> Vec<u8> {
        format!("key-{i}").into_bytes()
    }

    /// Keys enough for leaves above, at and below the frontier; then some removed, so
    /// leaves move up and top positions empty.
    #[test]
    fn a_rebuilt_top_is_the_top_that_commits_kept() {
        let mut top = TreeTop::empty();
        let mut db = BTreeMap::new();
        let mut whole = BTreeMap::new();
        let mut below_top = false;
        let rounds: [(u32, u32, Option<&[u8]>); 3] = [
            (0, 3_000, Some(b"a")),
            (1_000, 2_000, Some(b"b")),
            (0, 2_900, None),
        ];
        for (height, (from, to, value)) in (1..).zip(rounds) {
            let changes: Vec<_> = (from..to).map(|i| (key(i), value)).collect();
            let changes = changes.iter().map(|(k, v)| (&k[..], *v));
            let view = TreeView {
                top: &top,
                below: |pos| Ok(db.get(&pos).copied()),
            };
            let update = smt::update(&view, changes.clone()).unwrap();
            let reference = smt::update(&whole, changes).unwrap();
            assert_eq!(update, reference);
            for (pos, node) in &reference.writes {
                match node {
                    Some(node) => whole.insert(*pos, *node),
                    None => whole.remove(pos),
                };
            }
            store(&mut db, &top, &update.writes);
            top.apply(&update.writes, Height(height));
            let rebuilt = rebuild(db.iter().map(|(p, n)| (*p, *n)), Height(height));
            assert!(rebuilt.stale.is_empty());
            assert_eq!(rebuilt.top.nodes, top.nodes, "after round {height}");
            assert_eq!(rebuilt.top.root_hash(), update.root);
            let inner_in_top = db
                .iter()
                .any(|(pos, node)| TreeTop::slot(*pos).is_some() && matches!(node, Node::Inner(_)));
            assert!(!inner_in_top, "an inner node of the top was stored");
            below_top |= db.keys().any(|pos| pos.depth() >= FRONTIER_DEPTH);
        }
        assert!(below_top, "no key pair shared the top's prefix bits");
        assert!(db.len() < whole.len(), "the top's inner nodes were stored");
    }

    #[test]
    fn inner_nodes_stored_in_the_top_are_stale() {
        let changes: Vec<_> = (0..50).map(key).collect();
        let whole = smt::update(
            &BTreeMap::new(),
            changes.iter().map(|k| (&k[..], Some(&b"v"[..]))),
        )
        .unwrap();
        // As an earlier version stored it: every node, inner ones of the top included.
        let stored = whole
            .writes
            .iter()
            .filter_map(|(pos, node)| Some((*pos, (*node)?)));
        let rebuilt = rebuild(stored, Height(1));
        assert_eq!(rebuilt.top.root_hash(), whole.root);
        let inner = |pos: &NodePos| matches!(whole.writes[pos], Some(Node::Inner(_)));
        assert!(!rebuilt.stale.is_empty());
        assert!(rebuilt.stale.iter().all(inner));
    }

    #[test]
    fn only_leaves_of_the_top_are_stored() {
        let (key, value) = (Hash([1; 32]), Hash([2; 32]));
        let leaf = Node::Leaf { key, value };
        let root = NodePos::ROOT;
        let mut top = TreeTop::empty();
        assert_eq!(top.stored(root, Some(leaf)), Stored::Put(leaf));
        top.apply(&NodeWrites::from([(root, Some(leaf))]), Height(1));
        assert_eq!(top.stored(root, Some(Node::Inner(key))), Stored::Delete);
        assert_eq!(top.stored(root, None), Stored::Delete);
        top.apply(
            &NodeWrites::from([(root, Some(Node::Inner(key)))]),
            Height(2),
        );
        assert_eq!(top.stored(root, None), Stored::Nothing);
        assert_eq!(top.stored(root, Some(Node::Inner(value))), Stored::Nothing);
        assert_eq!(top.height(), Height(2));
        // Below the top, whatever is written.
        let mut below = root;
        while TreeTop::slot(below).is_some() {
            below = below.child(false);
        }
        assert_eq!(below.depth(), FRONTIER_DEPTH);
        assert_eq!(
            top.stored(below, Some(Node::Inner(key))),
            Stored::Put(Node::Inner(key))
        );
        assert_eq!(top.stored(below, None), Stored::Delete);
    }
}
