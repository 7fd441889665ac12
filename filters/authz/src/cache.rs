//! The per-instance verification cache: verified tokens → their claims, so that a repeated token
//! skips the signature check (the expensive part). Like Envoy jwt_authn's `jwt_cache_config`.
//!
//! Entries are keyed by a hash of the token but hold the whole token, and a hit requires the
//! whole token to be equal: a hash collision can only cost a miss, never admit another token.
//! Only tokens that passed every check are stored, and the caller still checks `exp`/`nbf` on
//! every hit. Bounded: when full, expired entries go first, then the oldest.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// A bounded map from tokens to what verifying them produced.
pub(crate) struct Cache<T> {
    capacity: usize,
    entries: HashMap<u64, Entry<T>, BuildHasherDefault<Prehashed>>,
    /// Insertion counter, to find the oldest entry.
    clock: u64,
}

struct Entry<T> {
    token: Box<str>,
    value: Rc<T>,
    inserted: u64,
    /// When the entry stops being useful (`exp` plus skew); `u64::MAX` without `exp`.
    expires: u64,
}

/// A fast unkeyed hash (FxHash's multiply-rotate over 8-byte words). Keying buys nothing here:
/// only verified tokens are stored, and a lookup compares the whole token, so a collision costs
/// a miss at most. SipHash took a noticeable part of the warm path on 1 KB tokens.
fn hash(token: &str) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut hash = token.len() as u64;
    let mut words = token.as_bytes().chunks_exact(8);
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
        hash = (hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
    for byte in words.remainder() {
        hash = (hash.rotate_left(5) ^ u64::from(*byte)).wrapping_mul(K);
    }
    hash
}

impl<T> std::fmt::Debug for Cache<T> {
    // Tokens are credentials: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &self.capacity)
            .field("len", &self.entries.len())
            .finish_non_exhaustive()
    }
}

/// The map's keys are already hashes: use them as they are.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); fold anything else in anyway.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl<T> Cache<T> {
    /// A cache holding at most `capacity` tokens; 0 caches nothing.
    pub(crate) fn new(capacity: usize) -> Cache<T> {
        Cache {
            capacity,
            entries: HashMap::with_capacity_and_hasher(
                capacity.min(1024),
                BuildHasherDefault::default(),
            ),
            clock: 0,
        }
    }

    /// What was stored for exactly this token.
    pub(crate) fn get(&self, token: &str) -> Option<Rc<T>> {
        if self.capacity == 0 {
            return None;
        }
        let entry = self.entries.get(&hash(token))?;
        (*entry.token == *token).then(|| entry.value.clone())
    }

    /// Remember `value` for `token` until `expires`; at `now`, entries expired make room first.
    pub(crate) fn insert(&mut self, token: &str, value: Rc<T>, expires: u64, now: u64) {
        if self.capacity == 0 {
            return;
        }
        let key = hash(token);
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, entry| entry.expires > now);
            if self.entries.len() >= self.capacity
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, entry)| entry.inserted)
                    .map(|(key, _)| *key)
            {
                self.entries.remove(&oldest);
            }
        }
        self.clock += 1;
        self.entries.insert(
            key,
            Entry {
                token: token.into(),
                value,
                inserted: self.clock,
                expires,
            },
        );
    }

    /// How many tokens are stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_needs_the_same_token() {
        let mut cache = Cache::new(4);
        cache.insert("a.b.c", Rc::new(1), 100, 0);
        assert_eq!(cache.get("a.b.c").as_deref(), Some(&1));
        assert_eq!(cache.get("a.b.d"), None);
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = Cache::new(0);
        cache.insert("t", Rc::new(1), 100, 0);
        assert_eq!(cache.get("t"), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn full_cache_drops_expired_then_oldest() {
        let mut cache = Cache::new(3);
        cache.insert("old", Rc::new(1), 1000, 0);
        cache.insert("expiring", Rc::new(2), 10, 0);
        cache.insert("mid", Rc::new(3), 1000, 0);
        // At t=20 "expiring" is dead: it goes, the others stay.
        cache.insert("new", Rc::new(4), 1000, 20);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("expiring"), None);
        assert!(cache.get("old").is_some());
        // Nothing expired: the oldest goes.
        cache.insert("newer", Rc::new(5), 1000, 20);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("old"), None);
        assert!(cache.get("mid").is_some() && cache.get("new").is_some());
        assert!(cache.get("newer").is_some());
    }

    #[test]
    fn reinserting_a_token_does_not_evict() {
        let mut cache = Cache::new(2);
        cache.insert("a", Rc::new(1), 1000, 0);
        cache.insert("b", Rc::new(2), 1000, 0);
        cache.insert("a", Rc::new(3), 1000, 0);
        assert_eq!(cache.get("a").as_deref(), Some(&3));
        assert_eq!(cache.get("b").as_deref(), Some(&2));
    }
}
