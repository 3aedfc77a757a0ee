//! A bounded read-through cache for point lookups the database answers again and again:
//! the state entries and the upper state-tree nodes that every block reads. Each RocksDB
//! lookup searches the memtable's skip list, which was a sixth of a node's consensus
//! thread under load.
//!
//! The cache never changes an answer: it holds what the database holds. Writers call
//! [`ReadCache::apply`] after their batch is durable. A reader that missed fills the
//! cache only if no write was applied since it looked ([`Ticket`]), so a value read just
//! before a commit cannot be cached after it. Only point lookups: no iteration order can
//! leak into state.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};

use foldhash::fast::RandomState;

/// Handed out on a miss: the write generation the reader saw before going to the database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ticket(u64);

#[derive(Debug)]
pub struct ReadCache<K, V> {
    inner: RwLock<Inner<K, V>>,
    max_entries: usize,
    max_bytes: usize,
    weigh: fn(&K, &V) -> usize,
}

#[derive(Debug)]
struct Inner<K, V> {
    entries: HashMap<K, V, RandomState>,
    /// Bytes of `entries` by `weigh`.
    bytes: usize,
    /// How many writes were applied.
    generation: u64,
}

impl<K: Hash + Eq, V: Clone> ReadCache<K, V> {
    /// A cache of at most `max_entries` entries and `max_bytes` bytes as `weigh` counts
    /// them. When a new entry would pass either bound the cache starts over empty: the
    /// entries a block reads come back within that block.
    pub fn new(max_entries: usize, max_bytes: usize, weigh: fn(&K, &V) -> usize) -> Self {
        ReadCache {
            inner: RwLock::new(Inner {
                entries: HashMap::default(),
                bytes: 0,
                generation: 0,
            }),
            max_entries,
            max_bytes,
            weigh,
        }
    }

    /// The cached value, or a ticket for filling in what the database answers.
    pub fn get<Q>(&self, key: &Q) -> Result<V, Ticket>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        match inner.entries.get(key) {
            Some(value) => Ok(value.clone()),
            None => Err(Ticket(inner.generation)),
        }
    }

    /// Caches what the database answered, unless a write was applied since `ticket`.
    pub fn fill(&self, ticket: Ticket, key: K, value: V) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if inner.generation == ticket.0 {
            self.insert(&mut inner, key, value);
        }
    }

    /// Writes that are now durable in the database.
    pub fn apply(&self, writes: impl IntoIterator<Item = (K, V)>) {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        for (key, value) in writes {
            self.insert(&mut inner, key, value);
        }
    }

    fn insert(&self, inner: &mut Inner<K, V>, key: K, value: V) {
        let weight = (self.weigh)(&key, &value);
        if let Some(old) = inner.entries.get(&key) {
            inner.bytes -= (self.weigh)(&key, old);
        } else if inner.entries.len() >= self.max_entries
            || inner.bytes.saturating_add(weight) > self.max_bytes
        {
            inner.entries.clear();
            inner.bytes = 0;
        }
        inner.bytes += weight;
        inner.entries.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        inner.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, max_bytes: usize) -> ReadCache<u32, Option<u32>> {
        ReadCache::new(max_entries, max_bytes, |_, _| 10)
    }

    #[test]
    fn a_value_read_before_a_write_is_not_cached_after_it() {
        let cache = cache(8, 1_000);
        let ticket = cache.get(&1).unwrap_err();
        // A commit lands between the reader's database lookup and its fill.
        cache.apply([(1, Some(2))]);
        cache.fill(ticket, 1, None);
        assert_eq!(cache.get(&1), Ok(Some(2)));
        let ticket = cache.get(&3).unwrap_err();
        cache.apply([(1, Some(4))]);
        cache.fill(ticket, 3, Some(9));
        assert!(cache.get(&3).is_err(), "a fill older than a write was kept");
    }

    #[test]
    fn a_fill_with_no_write_in_between_is_kept() {
        let cache = cache(8, 1_000);
        let ticket = cache.get(&1).unwrap_err();
        cache.fill(ticket, 1, None);
        assert_eq!(cache.get(&1), Ok(None));
    }

    #[test]
    fn the_cache_starts_over_at_either_bound() {
        let by_count = cache(3, 1_000);
        by_count.apply((0..3).map(|k| (k, Some(k))));
        assert_eq!(by_count.len(), 3);
        // Overwriting an entry adds nothing.
        by_count.apply([(2, Some(7))]);
        assert_eq!(by_count.len(), 3);
        by_count.apply([(3, Some(3))]);
        assert_eq!(by_count.len(), 1);
        assert_eq!(by_count.get(&3), Ok(Some(3)));

        let by_bytes = cache(100, 25);
        by_bytes.apply([(0, None), (1, None)]);
        assert_eq!(by_bytes.len(), 2);
        by_bytes.apply([(2, None)]);
        assert_eq!(by_bytes.len(), 1);
    }
}
