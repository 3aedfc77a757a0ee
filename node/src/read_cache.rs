//! A bounded read-through cache for point lookups the database answers again and again:
//! the state entries that every block reads. Each RocksDB lookup searches the memtable's
//! skip list, which was a sixth of a node's consensus thread under load.
//!
//! The cache never answers with a value older than the database holds: a writer calls
//! [`ReadCache::forget`] on the keys of its batch before writing it and
//! [`ReadCache::apply`] once it is durable. A reader that missed fills the cache only if
//! no write began or was applied since it looked ([`Ticket`]), so a value read just
//! before a commit cannot be cached after it. Only point lookups: no iteration order can
//! leak into state.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
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

    /// Before a batch that writes `keys` goes to the database: until [`ReadCache::apply`],
    /// readers of those keys go to the database too, so none is answered from the cache
    /// with a value older than the database already holds. Fills in between may catch the
    /// old value; `apply` overwrites them.
    pub fn forget<'k, Q>(&self, keys: impl IntoIterator<Item = &'k Q>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'k,
    {
        let mut inner = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        inner.generation += 1;
        for key in keys {
            self.remove(&mut inner, key);
        }
    }

    fn remove<Q>(&self, inner: &mut Inner<K, V>, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some((key, old)) = inner.entries.remove_entry(key) {
            inner.bytes -= (self.weigh)(&key, &old);
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
        // Within both bounds whatever the key held: one lookup. (A commit's keys were
        // forgotten before its write, so applying it mostly inserts.)
        if inner.entries.len() < self.max_entries
            && inner.bytes.saturating_add(weight) <= self.max_bytes
        {
            inner.bytes += weight;
            match inner.entries.entry(key) {
                Entry::Occupied(mut held) => {
                    inner.bytes -= (self.weigh)(held.key(), held.get());
                    held.insert(value);
                }
                Entry::Vacant(free) => {
                    free.insert(value);
                }
            }
            return;
        }
        self.remove(inner, &key);
        if inner.entries.len() >= self.max_entries
            || inner.bytes.saturating_add(weight) > self.max_bytes
        {
            inner.entries.clear();
            inner.bytes = 0;
        }
        // An entry over the whole budget is not kept at all.
        if weight <= self.max_bytes {
            inner.bytes += weight;
            inner.entries.insert(key, value);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
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

    #[test]
    fn a_value_that_grows_counts_at_its_new_size() {
        // Weighs the value itself: Some(n) costs n bytes.
        let cache: ReadCache<u32, Option<u32>> =
            ReadCache::new(100, 30, |_, v| v.map_or(0, |n| n as usize));
        cache.apply([(0, Some(10)), (1, Some(10))]);
        assert_eq!(cache.len(), 2);
        // 10 + 10 fits; 10 + 25 does not, so the cache starts over with the new value.
        cache.apply([(1, Some(25))]);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&1), Ok(Some(25)));
        // An entry over the whole budget is not cached.
        cache.apply([(2, Some(31))]);
        assert!(cache.get(&2).is_err());
    }

    #[test]
    fn a_forgotten_key_goes_to_the_database_until_applied() {
        let cache = cache(8, 1_000);
        cache.apply([(1, Some(1)), (2, Some(2))]);
        cache.forget([&1]);
        let ticket = cache.get(&1).unwrap_err();
        assert_eq!(cache.get(&2), Ok(Some(2)));
        // A fill during the write may catch the old value; apply overwrites it.
        cache.fill(ticket, 1, Some(1));
        cache.apply([(1, Some(3))]);
        assert_eq!(cache.get(&1), Ok(Some(3)));
    }
}
