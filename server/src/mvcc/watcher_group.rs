//! Which watchers want a key: an index from keys to the watchers whose ranges cover them
//! (etcd's `watcherGroup`).
//!
//! Single-key watchers — the common case, and the one that must scale to many thousands —
//! are found with one hash lookup; range and prefix watchers are kept in a list and tested
//! one by one. The index holds only keys and caller-chosen handles; it knows nothing of
//! revisions, streams or events.

use std::collections::HashMap;
use std::hash::Hash;

/// The keys a watcher covers, in etcd's watch conventions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly this key.
    One(Vec<u8>),
    /// Every key from this one on (etcd's range end `"\0"`).
    From(Vec<u8>),
    /// `[start, end)`.
    Range(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    pub fn covers(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::One(k) => key == k.as_slice(),
            KeyRange::From(k) => key >= k.as_slice(),
            KeyRange::Range(k, end) => key >= k.as_slice() && key < end.as_slice(),
        }
    }
}

/// Watchers (identified by `T`) indexed by the keys they cover.
#[derive(Debug)]
pub struct WatcherGroup<T> {
    single: HashMap<Vec<u8>, Vec<T>>,
    ranges: Vec<(KeyRange, T)>,
    len: usize,
}

impl<T> Default for WatcherGroup<T> {
    fn default() -> Self {
        WatcherGroup {
            single: HashMap::new(),
            ranges: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Copy + Eq + Hash> WatcherGroup<T> {
    pub fn add(&mut self, range: &KeyRange, who: T) {
        match range {
            KeyRange::One(k) => self.single.entry(k.clone()).or_default().push(who),
            other => self.ranges.push((other.clone(), who)),
        }
        self.len += 1;
    }

    /// Removes one entry of `who` for `range`; false if there was none.
    pub fn remove(&mut self, range: &KeyRange, who: T) -> bool {
        let removed = match range {
            KeyRange::One(k) => match self.single.get_mut(k) {
                Some(list) => {
                    let found = list
                        .iter()
                        .position(|w| *w == who)
                        .map(|i| list.swap_remove(i));
                    if list.is_empty() {
                        self.single.remove(k);
                    }
                    found.is_some()
                }
                None => false,
            },
            other => match self
                .ranges
                .iter()
                .position(|(r, w)| r == other && *w == who)
            {
                Some(i) => {
                    self.ranges.swap_remove(i);
                    true
                }
                None => false,
            },
        };
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` for every watcher covering `key` (once per entry).
    pub fn for_each_covering(&self, key: &[u8], mut f: impl FnMut(T)) {
        if let Some(list) = self.single.get(key) {
            list.iter().for_each(|w| f(*w));
        }
        for (r, w) in &self.ranges {
            if r.covers(key) {
                f(*w);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covering(g: &WatcherGroup<u32>, key: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        g.for_each_covering(key, |w| out.push(w));
        out.sort();
        out
    }

    #[test]
    fn finds_single_key_range_and_from_key_watchers() {
        let mut g = WatcherGroup::default();
        g.add(&KeyRange::One(b"a".to_vec()), 1);
        g.add(&KeyRange::One(b"a".to_vec()), 2);
        g.add(&KeyRange::Range(b"a".to_vec(), b"b".to_vec()), 3);
        g.add(&KeyRange::From(b"m".to_vec()), 4);
        assert_eq!(covering(&g, b"a"), vec![1, 2, 3]);
        assert_eq!(covering(&g, b"ab"), vec![3]);
        assert_eq!(covering(&g, b"b"), Vec::<u32>::new());
        assert_eq!(covering(&g, b"zz"), vec![4]);
        assert_eq!(g.len(), 4);
        assert!(g.remove(&KeyRange::One(b"a".to_vec()), 1));
        assert!(!g.remove(&KeyRange::One(b"a".to_vec()), 1));
        assert!(g.remove(&KeyRange::From(b"m".to_vec()), 4));
        assert_eq!(covering(&g, b"a"), vec![2, 3]);
        assert!(g.remove(&KeyRange::Range(b"a".to_vec(), b"b".to_vec()), 3));
        assert_eq!(covering(&g, b"a"), vec![2]);
        assert_eq!(g.len(), 1);
    }
}
