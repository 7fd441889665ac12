//! Randomness, controlled by the proxy (the test harness can seed it).
//!
//! ```no_run
//! use weft_sdk::random;
//!
//! let request_id = format!("{:016x}", random::u64());
//! let nonce: Vec<u8> = random::bytes(16);
//! # let _ = (request_id, nonce);
//! ```

use crate::bindings::weft::filter::random as raw;

/// The most bytes the host returns per call.
const MAX_PER_CALL: usize = 65536;

/// `len` random bytes.
pub fn bytes(len: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(len);
    while bytes.len() < len {
        let chunk = (len - bytes.len()).min(MAX_PER_CALL);
        // `chunk` is at most 65536, so it fits.
        let got = raw::random_bytes(chunk as u32);
        if got.is_empty() {
            // Never expected; guards against looping forever on a host that returns nothing.
            break;
        }
        bytes.extend_from_slice(&got[..got.len().min(chunk)]);
    }
    bytes
}

/// A random 64-bit number.
pub fn u64() -> u64 {
    raw::random_u64()
}
