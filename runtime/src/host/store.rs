//! `weft:filter/store`: a key-value store per filter name per proxy, shared by every instance
//! on every worker, with versions for compare-and-swap, expiry, and bounds.
//!
//! One mutex per filter's store: a call holds it for a hash map operation (and, when the store
//! is full and something has expired, one sweep), so contention is between the calls of one
//! filter only. Expired entries are invisible at once and removed when met, or swept when a
//! write finds the store full; the earliest expiry is tracked so a full store of live entries
//! is not swept again and again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::HostState;
use crate::bindings::weft::filter::store::{Entry as WitEntry, Host, StoreError};
use crate::lock;

/// The bounds of one filter's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most keys at once.
    pub max_keys: usize,
    /// Most bytes of keys and values at once.
    pub max_bytes: usize,
    /// Longest key.
    pub max_key_bytes: usize,
    /// Longest value.
    pub max_value_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_keys: 100_000,
            max_bytes: 16 << 20,
            max_key_bytes: 512,
            max_value_bytes: 1 << 20,
        }
    }
}

/// Why a write was refused (the WIT `store-error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Empty or too long.
    InvalidKey,
    /// Too long.
    ValueTooLarge,
    /// At its maximum of keys or bytes.
    Full,
    /// `compare-and-swap` saw another version (0: absent).
    Conflict(u64),
}

impl Refused {
    fn index(self) -> usize {
        match self {
            Refused::InvalidKey => 0,
            Refused::ValueTooLarge => 1,
            Refused::Full => 2,
            Refused::Conflict(_) => 3,
        }
    }
}

const REFUSALS: [&str; 4] = ["invalid_key", "value_too_large", "full", "conflict"];

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    version: u64,
    /// Monotonic nanoseconds; `u64::MAX`: never.
    expires: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Box<str>, Entry>,
    bytes: usize,
    /// The last version given out.
    version: u64,
    /// No entry expires before this (a lower bound; `u64::MAX`: none expires).
    earliest_expiry: u64,
}

impl Inner {
    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.bytes -= key.len() + entry.value.len();
        Some(entry)
    }

    /// The live entry of `key`, removing it when it has expired.
    fn live(&mut self, key: &str, now: u64) -> Option<&Entry> {
        if self.map.get(key).is_some_and(|e| e.expires <= now) {
            self.remove(key);
        }
        self.map.get(key)
    }

    fn sweep(&mut self, now: u64) {
        if self.earliest_expiry > now {
            return;
        }
        let mut freed = 0;
        let mut earliest = u64::MAX;
        self.map.retain(|key, e| {
            if e.expires <= now {
                freed += key.len() + e.value.len();
                false
            } else {
                earliest = earliest.min(e.expires);
                true
            }
        });
        self.bytes -= freed;
        self.earliest_expiry = earliest;
    }
}

/// One filter's store.
#[derive(Debug)]
pub struct FilterStore {
    inner: Mutex<Inner>,
    limits: StoreLimits,
    keys: Gauge,
    bytes: Gauge,
    refusals: [Counter; 4],
}

impl FilterStore {
    /// An empty store reporting to these metrics.
    fn new(limits: StoreLimits, keys: Gauge, bytes: Gauge, refusals: [Counter; 4]) -> Self {
        Self {
            inner: Mutex::new(Inner {
                earliest_expiry: u64::MAX,
                ..Inner::default()
            }),
            limits,
            keys,
            bytes,
            refusals,
        }
    }

    /// An empty store with no metrics anyone reads (tests).
    pub fn detached(limits: StoreLimits) -> Self {
        Self::new(
            limits,
            Gauge::default(),
            Gauge::default(),
            Default::default(),
        )
    }

    /// The value and version of `key`, unless absent or expired at `now`.
    pub fn get(&self, key: &str, now: u64) -> Option<(Vec<u8>, u64)> {
        let mut inner = lock(&self.inner);
        let found = inner.live(key, now).map(|e| (e.value.clone(), e.version));
        self.report(&inner);
        found
    }

    /// Write `value` under `key`; with `expected`, only if the key's version is that (0:
    /// absent). `ttl` in milliseconds, 0: never expires. Returns the new version.
    pub fn write(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl_ms: u64,
        now: u64,
    ) -> Result<u64, Refused> {
        let result = self.try_write(key, expected, value, ttl_ms, now);
        if let Err(refused) = result {
            self.refusals[refused.index()].inc();
        }
        result
    }

    fn try_write(
        &self,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl_ms: u64,
        now: u64,
    ) -> Result<u64, Refused> {
        let limits = &self.limits;
        if key.is_empty() || key.len() > limits.max_key_bytes {
            return Err(Refused::InvalidKey);
        }
        if value.len() > limits.max_value_bytes {
            return Err(Refused::ValueTooLarge);
        }
        let expires = match ttl_ms {
            0 => u64::MAX,
            ms => now.saturating_add(ms.saturating_mul(1_000_000)),
        };
        let mut inner = lock(&self.inner);
        let current = inner.live(key, now).map(|e| (e.version, e.value.len()));
        if let Some(expected) = expected {
            let version = current.map_or(0, |(v, _)| v);
            if version != expected {
                return Err(Refused::Conflict(version));
            }
        }
        let fits = |inner: &Inner| {
            let old = current.map_or(0, |(_, len)| key.len() + len);
            let keys = inner.map.len() + usize::from(current.is_none());
            keys <= limits.max_keys
                && inner.bytes - old + key.len() + value.len() <= limits.max_bytes
        };
        if !fits(&inner) {
            inner.sweep(now);
            if !fits(&inner) {
                return Err(Refused::Full);
            }
        }
        inner.version += 1;
        let version = inner.version;
        inner.remove(key);
        inner.bytes += key.len() + value.len();
        inner.earliest_expiry = inner.earliest_expiry.min(expires);
        inner.map.insert(
            key.into(),
            Entry {
                value,
                version,
                expires,
            },
        );
        self.report(&inner);
        Ok(version)
    }

    /// Remove `key`; whether it was there (and live).
    pub fn delete(&self, key: &str, now: u64) -> bool {
        let mut inner = lock(&self.inner);
        let live = inner.live(key, now).is_some();
        inner.remove(key);
        self.report(&inner);
        live
    }

    fn report(&self, inner: &Inner) {
        self.keys
            .set(i64::try_from(inner.map.len()).unwrap_or(i64::MAX));
        self.bytes
            .set(i64::try_from(inner.bytes).unwrap_or(i64::MAX));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(crate) struct StoreLabels {
    filter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(crate) struct RefusalLabels {
    filter: String,
    reason: &'static str,
}

/// Every filter's store in this process, by filter name.
#[derive(Debug)]
pub(crate) struct Stores {
    stores: Mutex<HashMap<Arc<str>, Arc<FilterStore>>>,
    limits: StoreLimits,
    pub(crate) keys: Family<StoreLabels, Gauge>,
    pub(crate) bytes: Family<StoreLabels, Gauge>,
    pub(crate) refusals: Family<RefusalLabels, Counter>,
}

impl Stores {
    pub(crate) fn new(limits: StoreLimits) -> Self {
        Self {
            stores: Mutex::new(HashMap::new()),
            limits,
            keys: Family::default(),
            bytes: Family::default(),
            refusals: Family::default(),
        }
    }

    /// The store of `filter`, created on first use.
    pub(crate) fn of(&self, filter: &Arc<str>) -> Arc<FilterStore> {
        let mut stores = lock(&self.stores);
        stores
            .entry(filter.clone())
            .or_insert_with(|| {
                let labels = StoreLabels {
                    filter: filter.to_string(),
                };
                Arc::new(FilterStore::new(
                    self.limits,
                    self.keys.get_or_create(&labels).clone(),
                    self.bytes.get_or_create(&labels).clone(),
                    REFUSALS.map(|reason| {
                        self.refusals
                            .get_or_create(&RefusalLabels {
                                filter: filter.to_string(),
                                reason,
                            })
                            .clone()
                    }),
                ))
            })
            .clone()
    }
}

impl HostState {
    fn store(&mut self) -> &FilterStore {
        let filter = &self.filter;
        let shared = &self.shared;
        self.store.get_or_insert_with(|| shared.stores.of(filter))
    }

    fn store_write(
        &mut self,
        key: &str,
        expected: Option<u64>,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> Result<u64, StoreError> {
        let now = self.shared.clock.monotonic_nanos();
        self.store()
            .write(key, expected, value, ttl_ms, now)
            .map_err(|refused| match refused {
                Refused::InvalidKey => StoreError::InvalidKey,
                Refused::ValueTooLarge => StoreError::ValueTooLarge,
                Refused::Full => StoreError::Full,
                Refused::Conflict(v) => StoreError::Conflict(v),
            })
    }
}

impl Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<WitEntry>> {
        let now = self.shared.clock.monotonic_nanos();
        Ok(self
            .store()
            .get(&key, now)
            .map(|(value, version)| WitEntry { value, version }))
    }

    fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<u64, StoreError>> {
        Ok(self.store_write(&key, None, value, ttl_ms))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        version: u64,
        value: Vec<u8>,
        ttl_ms: u64,
    ) -> wasmtime::Result<Result<u64, StoreError>> {
        Ok(self.store_write(&key, Some(version), value, ttl_ms))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        let now = self.shared.clock.monotonic_nanos();
        Ok(self.store().delete(&key, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn small() -> FilterStore {
        FilterStore::detached(StoreLimits {
            max_keys: 3,
            max_bytes: 64,
            max_key_bytes: 8,
            max_value_bytes: 32,
        })
    }

    #[test]
    fn versions_change_on_every_write_and_cas_checks_them() {
        let s = small();
        let v1 = s.write("k", Some(0), b"a".to_vec(), 0, 0).expect("absent");
        assert_eq!(
            s.write("k", Some(0), b"b".to_vec(), 0, 0),
            Err(Refused::Conflict(v1))
        );
        let v2 = s
            .write("k", Some(v1), b"b".to_vec(), 0, 0)
            .expect("matches");
        assert!(v2 > v1);
        assert_eq!(s.get("k", 0), Some((b"b".to_vec(), v2)));
        assert!(s.delete("k", 0));
        assert!(!s.delete("k", 0));
        // Recreated after a delete: a new version, so a stale CAS fails.
        let v3 = s.write("k", None, b"c".to_vec(), 0, 0).expect("set");
        assert!(v3 > v2);
        assert_eq!(
            s.write("k", Some(v2), b"d".to_vec(), 0, 0),
            Err(Refused::Conflict(v3))
        );
    }

    #[test]
    fn entries_expire_at_their_ttl() {
        let s = small();
        s.write("k", None, b"a".to_vec(), 10, 0).expect("set");
        assert!(s.get("k", 9 * MS).is_some());
        assert_eq!(s.get("k", 10 * MS), None);
        // Expired counts as absent for compare-and-swap.
        s.write("k", Some(0), b"b".to_vec(), 0, 10 * MS)
            .expect("absent again");
    }

    #[test]
    fn limits_are_enforced_after_expired_entries_are_swept() {
        let s = small();
        assert_eq!(s.write("", None, vec![], 0, 0), Err(Refused::InvalidKey));
        assert_eq!(
            s.write("123456789", None, vec![], 0, 0),
            Err(Refused::InvalidKey)
        );
        assert_eq!(
            s.write("k", None, vec![0; 33], 0, 0),
            Err(Refused::ValueTooLarge)
        );
        for k in ["a", "b", "c"] {
            s.write(k, None, vec![0; 4], 5, 0).expect("room");
        }
        assert_eq!(s.write("d", None, vec![0; 4], 0, 0), Err(Refused::Full));
        // Overwriting an existing key needs no new room.
        s.write("a", None, vec![1; 4], 5, 0).expect("overwrite");
        // Once they expire, their room is free again.
        s.write("d", None, vec![0; 4], 0, 5 * MS).expect("swept");
        // Bytes: 3 keys of 1 byte and values up to 64 in all.
        s.write("e", None, vec![0; 30], 0, 5 * MS).expect("room");
        assert_eq!(
            s.write("f", None, vec![0; 32], 0, 5 * MS),
            Err(Refused::Full)
        );
        assert_eq!(s.refusals[2].get(), 2);
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let s = Arc::new(FilterStore::detached(StoreLimits::default()));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        loop {
                            let (n, v) = s
                                .get("n", 0)
                                .map(|(b, v)| {
                                    (u64::from_le_bytes(b.try_into().unwrap_or([0; 8])), v)
                                })
                                .unwrap_or((0, 0));
                            if s.write("n", Some(v), (n + 1).to_le_bytes().to_vec(), 0, 0)
                                .is_ok()
                            {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let (bytes, _) = s.get("n", 0).expect("set");
        assert_eq!(u64::from_le_bytes(bytes.try_into().expect("8 bytes")), 4000);
    }
}
