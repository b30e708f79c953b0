//! A bounded map in recency order: O(1) lookup, touch, insert and eviction
//! of the least recently used entry, for the keyed breakers.
//!
//! Entries live in a slab (`Vec`) and are linked in a doubly linked list by
//! index, most recent first; a `hashbrown::HashTable` of slab indices finds
//! an entry by key, hashed with std's `RandomState` (SipHash, seeded per map:
//! keys are request hosts, chosen by whoever sends the requests, so the hash
//! must not be one they can collide). Each key is stored once, in its slab
//! node.

use hashbrown::HashTable;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};

/// No node: the end of the list, or an empty list.
const NIL: u32 = u32::MAX;

/// The most entries a map can hold (indices are `u32`, `NIL` excluded).
pub(crate) const MAX_LEN: usize = (u32::MAX - 1) as usize;

struct Node<K, V> {
    /// `None` while the slot is free.
    entry: Option<(K, V)>,
    /// Towards the most recent.
    prev: u32,
    /// Towards the least recent; the next free slot while free.
    next: u32,
}

pub(crate) struct Lru<K, V> {
    table: HashTable<u32>,
    hasher: RandomState,
    nodes: Vec<Node<K, V>>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    /// Free slots, linked through `next`.
    free: u32,
    len: usize,
}

impl<K, V> Lru<K, V> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl<K: Hash + Eq, V> Lru<K, V> {
    pub(crate) fn new() -> Self {
        Lru {
            table: HashTable::new(),
            hasher: RandomState::new(),
            nodes: Vec::new(),
            head: NIL,
            tail: NIL,
            free: NIL,
            len: 0,
        }
    }

    fn find(&self, key: &K) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        let nodes = &self.nodes;
        self.table
            .find(
                hash,
                |&i| matches!(&nodes[i as usize].entry, Some((k, _)) if k == key),
            )
            .copied()
    }

    /// The value of `key`, without changing its recency.
    pub(crate) fn peek(&self, key: &K) -> Option<&V> {
        let i = self.find(key)?;
        self.nodes[i as usize].entry.as_ref().map(|(_, v)| v)
    }

    /// The value of `key`, made the most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<&mut V> {
        let i = self.find(key)?;
        self.unlink(i);
        self.link_front(i);
        self.nodes[i as usize].entry.as_mut().map(|(_, v)| v)
    }

    /// The least recently used value.
    pub(crate) fn lru(&self) -> Option<&V> {
        self.nodes
            .get(self.tail as usize)?
            .entry
            .as_ref()
            .map(|(_, v)| v)
    }

    /// Removes and returns the least recently used entry.
    pub(crate) fn pop_lru(&mut self) -> Option<(K, V)> {
        let i = self.tail;
        let (key, _) = self.nodes.get(i as usize)?.entry.as_ref()?;
        let hash = self.hasher.hash_one(key);
        if let Ok(found) = self.table.find_entry(hash, |&j| j == i) {
            found.remove();
        }
        self.unlink(i);
        let node = &mut self.nodes[i as usize];
        let entry = node.entry.take();
        node.next = self.free;
        self.free = i;
        self.len -= 1;
        entry
    }

    /// Inserts `key` (which must not be in the map) as the most recently
    /// used. Returns `false`, changing nothing, when the map holds
    /// [`MAX_LEN`] entries.
    pub(crate) fn push_new(&mut self, key: K, value: V) -> bool {
        if self.len >= MAX_LEN {
            return false;
        }
        let hash = self.hasher.hash_one(&key);
        let node = Node {
            entry: Some((key, value)),
            prev: NIL,
            next: NIL,
        };
        let i = if self.free == NIL {
            // `len < MAX_LEN` and every slot is in use: the index fits.
            let i = self.nodes.len() as u32;
            self.nodes.push(node);
            i
        } else {
            let i = self.free;
            let slot = &mut self.nodes[i as usize];
            self.free = slot.next;
            *slot = node;
            i
        };
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        self.table
            .insert_unique(hash, i, |&j| match &nodes[j as usize].entry {
                Some((k, _)) => hasher.hash_one(k),
                None => 0,
            });
        self.link_front(i);
        self.len += 1;
        true
    }

    /// Every entry, most recently used first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> + '_ {
        let mut at = self.head;
        std::iter::from_fn(move || {
            let node = self.nodes.get(at as usize)?;
            at = node.next;
            node.entry.as_ref().map(|(k, v)| (k, v))
        })
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        match self.nodes.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.nodes.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
        let n = &mut self.nodes[i as usize];
        n.prev = NIL;
        n.next = NIL;
    }

    fn link_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        match self.nodes.get_mut(old as usize) {
            Some(h) => h.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    #[derive(Debug, Clone)]
    enum Op {
        Get(u8),
        Push(u8),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<u8>().prop_map(|k| Op::Get(k % 16)),
            any::<u8>().prop_map(|k| Op::Push(k % 16)),
            Just(Op::Pop),
        ]
    }

    proptest! {
        /// The map always equals a naive list in recency order.
        #[test]
        fn matches_a_naive_recency_list(ops in proptest::collection::vec(op(), 0..300)) {
            let mut lru = Lru::new();
            // Most recent first, as (key, value).
            let mut naive: VecDeque<(u8, u32)> = VecDeque::new();
            for (step, op) in ops.into_iter().enumerate() {
                let step = step as u32;
                match op {
                    Op::Get(k) => {
                        let got = lru.get(&k).map(|v| *v);
                        let pos = naive.iter().position(|e| e.0 == k);
                        let want = pos.and_then(|p| naive.remove(p));
                        if let Some(e) = want {
                            naive.push_front(e);
                        }
                        prop_assert_eq!(got, want.map(|e| e.1));
                    }
                    Op::Push(k) => {
                        if lru.peek(&k).is_none() {
                            prop_assert!(lru.push_new(k, step));
                            naive.push_front((k, step));
                        }
                    }
                    Op::Pop => {
                        prop_assert_eq!(lru.lru().copied(), naive.back().map(|e| e.1));
                        prop_assert_eq!(lru.pop_lru(), naive.pop_back());
                    }
                }
                prop_assert_eq!(lru.len(), naive.len());
                let order: Vec<(u8, u32)> = lru.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(order, naive.iter().copied().collect::<Vec<_>>());
                for (k, v) in &naive {
                    prop_assert_eq!(lru.peek(k), Some(v));
                }
            }
        }
    }
}
