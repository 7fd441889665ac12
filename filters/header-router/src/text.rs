//! Reading request text without trusting it: query parameters (decoded with
//! `weft_sdk::text::form_decode`), regex input, and the stable hash behind sticky splits. Nothing
//! here panics on any input.

use std::borrow::Cow;

/// The `name=value` pairs of the query in `path` (the part after the first `?`), raw: not yet
/// decoded. A pair without `=` has an empty value (`?debug` is `("debug", "")`); empty pairs
/// (`a=1&&b=2`) are skipped.
pub(crate) fn query_pairs(path: &str) -> impl Iterator<Item = (&str, &str)> {
    let query = path.split_once('?').map_or("", |(_, query)| query);
    // A fragment never reaches a server, but a hand-made request target could carry one.
    let query = query.split_once('#').map_or(query, |(query, _)| query);
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}

/// Text for a regex: valid UTF-8 is borrowed, anything else has its bad bytes replaced by
/// `U+FFFD`.
pub(crate) fn as_text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// The hash that places a sticky value in a split: 64-bit FNV-1a, then MurmurHash3's `fmix64`
/// finalizer so that every input bit reaches the high bits [`scale`] reads.
///
/// Part of the filter's contract, like a consistent-hash ring: the same value lands in the same
/// place on every instance, proxy and restart, so changing this function would move users between
/// upstreams on upgrade. Tests pin its output.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// `x` scaled from `0..2^64` onto `0..total` (`x * total / 2^64`): a position in a split that
/// keeps its relative place when the weights change, so raising a canary's weight only moves
/// users onto the canary. Uniform inputs give positions uniform to within `total / 2^64`.
pub(crate) fn scale(x: u64, total: u64) -> u64 {
    let product = u128::from(x) * u128::from(total);
    // The high half of a u64 × u64 product fits in a u64.
    u64::try_from(product >> 64).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(path: &str) -> Vec<(&str, &str)> {
        query_pairs(path).collect()
    }

    #[test]
    fn query_pairs_split_on_ampersand_and_first_equals() {
        assert_eq!(
            pairs("/p?a=1&b=x=y&debug&&c="),
            [("a", "1"), ("b", "x=y"), ("debug", ""), ("c", "")]
        );
        assert_eq!(pairs("/p"), []);
        assert_eq!(pairs("/p?"), []);
        assert_eq!(pairs("/p?a=1#frag=2"), [("a", "1")]);
        assert_eq!(pairs("/p?a=1?b=2"), [("a", "1?b=2")]);
    }

    #[test]
    fn stable_hash_is_pinned() {
        // A compatibility promise: sticky users stay put across upgrades. FNV-1a's published
        // vectors ("" -> cbf29ce484222325, "a" -> af63dc4c8601ec8c, "foobar" ->
        // 85944171f73967e8) through fmix64, computed independently of this code.
        assert_eq!(stable_hash(b""), 0xefd0_1f60_ba99_2926);
        assert_eq!(stable_hash(b"a"), 0x82a2_a958_a9be_ce5b);
        assert_eq!(stable_hash(b"foobar"), 0x2c22_1949_22d1_672b);
        assert_eq!(stable_hash(b"alice"), 0x3507_d047_a67c_08f4);
    }

    #[test]
    fn scale_maps_onto_the_range() {
        assert_eq!(scale(0, 100), 0);
        assert_eq!(scale(u64::MAX, 100), 99);
        assert_eq!(scale(u64::MAX / 2, 100), 49);
        assert_eq!(scale(u64::MAX, 1), 0);
        assert_eq!(scale(u64::MAX, u64::MAX), u64::MAX - 1);
        // The same x keeps its relative place when the total changes.
        let x = stable_hash(b"user-42");
        let at_100 = scale(x, 100);
        let at_1000 = scale(x, 1000);
        assert!(at_1000 / 10 == at_100, "{at_100} vs {at_1000}");
    }
}
