//! `weft:filter/random`: randomness from the operating system.

use super::HostState;
use crate::runtime::bindings::weft::filter::random::Host;

/// The most bytes one `random-bytes` call returns.
const MAX_RANDOM_BYTES: u32 = 64 * 1024;

impl Host for HostState {
    fn random_bytes(&mut self, len: u32) -> wasmtime::Result<Vec<u8>> {
        let mut buf = vec![0; len.min(MAX_RANDOM_BYTES) as usize];
        getrandom::fill(&mut buf).map_err(|e| wasmtime::format_err!("no randomness: {e}"))?;
        Ok(buf)
    }

    fn random_u64(&mut self) -> wasmtime::Result<u64> {
        getrandom::u64().map_err(|e| wasmtime::format_err!("no randomness: {e}"))
    }
}
