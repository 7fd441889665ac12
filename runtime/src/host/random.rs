//! `weft:filter/random`: randomness from the operating system, or from a seed in tests.

use std::sync::atomic::{AtomicU64, Ordering};

use super::HostState;
use crate::bindings::weft::filter::random::Host;

/// The most bytes one `random-bytes` call returns.
const MAX_RANDOM_BYTES: u32 = 64 * 1024;

/// A source of randomness for filters.
pub trait Entropy: Send + Sync + 'static {
    /// A random 64-bit number, or why none is available.
    fn next_u64(&self) -> Result<u64, String>;

    /// Fill `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

/// The operating system's randomness (`getrandom`): what the proxy uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn next_u64(&self) -> Result<u64, String> {
        getrandom::u64().map_err(|e| e.to_string())
    }

    fn fill(&self, buf: &mut [u8]) -> Result<(), String> {
        getrandom::fill(buf).map_err(|e| e.to_string())
    }
}

/// A deterministic sequence from a seed (SplitMix64): a test that seeds it sees the same
/// "random" numbers, in the same order, on every run. Not for production: it is predictable.
#[derive(Debug)]
pub struct SeededEntropy {
    state: AtomicU64,
}

impl SeededEntropy {
    /// The sequence that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }
}

impl Entropy for SeededEntropy {
    fn next_u64(&self) -> Result<u64, String> {
        // SplitMix64 (Steele, Lea, Flood 2014): a Weyl sequence through a bijective mixer, so
        // concurrent callers each get a distinct step without a lock.
        let mut z = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
}

impl Host for HostState {
    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut buf = vec![0; len.min(MAX_RANDOM_BYTES) as usize];
        self.shared
            .entropy
            .fill(&mut buf)
            .map_err(|e| wasmtime::format_err!("no randomness: {e}"))?;
        Ok(buf)
    }

    fn random_u64(&mut self) -> wasmtime::Result<u64> {
        self.shared
            .entropy
            .next_u64()
            .map_err(|e| wasmtime::format_err!("no randomness: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence_and_another_seed_another() {
        let take = |seed| {
            let e = SeededEntropy::new(seed);
            let mut bytes = [0u8; 11];
            e.fill(&mut bytes).ok();
            (
                [e.next_u64().ok(), e.next_u64().ok(), e.next_u64().ok()],
                bytes,
            )
        };
        assert_eq!(take(7), take(7));
        assert_ne!(take(7), take(8));
        // SplitMix64's published first output for seed 0.
        assert_eq!(SeededEntropy::new(0).next_u64(), Ok(0xe220_a839_7b1d_cdaf));
    }
}
