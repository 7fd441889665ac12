//! Building a limit's bucket key from the facts of a request.
//!
//! A key is the limit's prefix (which descriptors it is made of) followed by each part's value,
//! length-prefixed (`<len>:<text>`), so that no two different sets of values give the same key
//! whatever bytes they hold. Header values that are not UTF-8 are hex-encoded (`<len>x<hex>`)
//! rather than decoded lossily, which would merge distinct values.
//!
//! A key longer than [`MAX_KEY_BYTES`] is replaced by `#` and the SHA-256 of the whole key in
//! hex ([`HASHED_KEY_BYTES`] bytes), so that a client sending huge header values cannot make
//! the proxy hold huge keys: every key the proxy stores is at most [`MAX_KEY_BYTES`] long.
//! Distinct keys stay distinct buckets: finding two keys with one SHA-256 is out of reach, so
//! a client can neither share nor take over another client's bucket by choosing its header. A
//! hashed key cannot equal a plain one, since plain keys start with the limit's prefix, which
//! never starts with `#`. (The hash is not keyed: every instance of the filter, on every
//! worker, must map a key to the same bucket, and they share no secret. Keying would only
//! guard against collisions, which SHA-256 already rules out.)

use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};

use crate::config::{Limit, Part};

/// The facts about a request that keys are made of. The filter fetches each from the host at
/// most once per request, and only when a key needs it.
pub trait Facts {
    /// The client's IP address, without the port.
    fn client_ip(&mut self) -> Option<&str>;
    /// The first value of the header at `index` of [`Plan::headers`](crate::config::Plan).
    fn header(&mut self, index: usize) -> Option<&[u8]>;
    /// The path without the query.
    fn path(&mut self) -> Option<&str>;
    /// The matched route's name.
    fn route(&mut self) -> Option<&str>;
    /// The method.
    fn method(&mut self) -> Option<&str>;
}

/// The longest key kept as it is; longer ones are hashed.
pub const MAX_KEY_BYTES: usize = 128;
/// The length of a hashed key: `#` and 64 hex digits.
pub const HASHED_KEY_BYTES: usize = 1 + 64;

/// Write `limit`'s key for the request into `out` (cleared first), at most [`MAX_KEY_BYTES`]
/// long. False when a part is missing (no such header, no route): the request is then not
/// subject to the limit.
pub fn build(limit: &Limit, facts: &mut impl Facts, out: &mut String) -> bool {
    if !build_whole(limit, facts, out) {
        return false;
    }
    if out.len() > MAX_KEY_BYTES {
        let digest = Sha256::digest(out.as_bytes());
        out.clear();
        out.push('#');
        for byte in digest {
            // Writing to a String cannot fail.
            let _ = write!(out, "{byte:02x}");
        }
        // A huge value must not keep its buffer: the scratch key lives as long as the instance.
        out.shrink_to(MAX_KEY_BYTES);
    }
    true
}

/// The key before any hashing: the prefix and every part, however long.
fn build_whole(limit: &Limit, facts: &mut impl Facts, out: &mut String) -> bool {
    out.clear();
    out.push_str(&limit.prefix);
    for part in &limit.parts {
        let value = match *part {
            Part::ClientAddress => facts.client_ip().map(str::as_bytes),
            Part::Header(index) => facts.header(index),
            Part::Path => facts.path().map(str::as_bytes),
            Part::Route => facts.route().map(str::as_bytes),
            Part::Method => facts.method().map(str::as_bytes),
        };
        match value {
            Some(value) => push_value(out, value),
            None => return false,
        }
    }
    true
}

fn push_value(out: &mut String, value: &[u8]) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", value.len());
    match std::str::from_utf8(value) {
        Ok(text) => {
            out.push(':');
            out.push_str(text);
        }
        Err(_) => {
            out.push('x');
            for byte in value {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// The IP address of a socket address as the host writes it (`1.2.3.4:5`, `[::1]:5`), without
/// the port. Anything else is returned whole: it is still a fine key.
pub fn ip_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(address, |(ip, _)| ip);
    }
    match address.split_once(':') {
        Some((ip, port)) if !port.contains(':') => ip,
        _ => address,
    }
}

/// The path of a request target, without the query.
pub fn path_of(target: &str) -> &str {
    target.split_once('?').map_or(target, |(path, _)| path)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Default)]
    struct Fixed {
        client: Option<&'static str>,
        headers: Vec<Option<&'static [u8]>>,
        path: Option<&'static str>,
        route: Option<&'static str>,
        method: Option<&'static str>,
    }

    impl Facts for Fixed {
        fn client_ip(&mut self) -> Option<&str> {
            self.client
        }
        fn header(&mut self, index: usize) -> Option<&[u8]> {
            self.headers.get(index).copied().flatten()
        }
        fn path(&mut self) -> Option<&str> {
            self.path
        }
        fn route(&mut self) -> Option<&str> {
            self.route
        }
        fn method(&mut self) -> Option<&str> {
            self.method
        }
    }

    fn limit(parts: &[Part], prefix: &str) -> Limit {
        Limit {
            name: "l".to_owned(),
            parts: parts.to_vec(),
            prefix: prefix.to_owned(),
            capacity: 1,
            refill_amount: 1,
            interval: Duration::from_secs(1),
            cost: 1,
            max_keys: 1,
        }
    }

    fn key(limit: &Limit, facts: &mut impl Facts) -> Option<String> {
        let mut out = String::from("stale");
        build(limit, facts, &mut out).then_some(out)
    }

    #[test]
    fn keys_join_prefix_and_length_prefixed_values() {
        let mut facts = Fixed {
            client: Some("10.0.0.1"),
            headers: vec![Some(b"acme"), Some(b"")],
            path: Some("/api"),
            route: Some("app"),
            method: Some("GET"),
        };
        let all = [
            Part::ClientAddress,
            Part::Header(0),
            Part::Header(1),
            Part::Path,
            Part::Route,
            Part::Method,
        ];
        assert_eq!(
            key(&limit(&all, "P;"), &mut facts).as_deref(),
            Some("P;8:10.0.0.14:acme0:4:/api3:app3:GET")
        );
        assert_eq!(key(&limit(&[], ";"), &mut facts).as_deref(), Some(";"));
    }

    #[test]
    fn a_missing_part_means_no_key() {
        let mut facts = Fixed {
            path: Some("/"),
            ..Fixed::default()
        };
        let parts = [Part::Path, Part::Header(0)];
        assert_eq!(key(&limit(&parts, "p,h;"), &mut facts), None);
        assert_eq!(key(&limit(&[Part::Route], "r;"), &mut facts), None);
    }

    #[test]
    fn values_cannot_be_confused() {
        let two = [Part::Header(0), Part::Header(1)];
        let mut ab_c = Fixed {
            headers: vec![Some(b"a:b"), Some(b"c")],
            ..Fixed::default()
        };
        let mut a_bc = Fixed {
            headers: vec![Some(b"a"), Some(b"b:c")],
            ..Fixed::default()
        };
        assert_ne!(
            key(&limit(&two, ";"), &mut ab_c),
            key(&limit(&two, ";"), &mut a_bc)
        );
        // Invalid UTF-8 is hex-encoded: distinct bytes stay distinct keys.
        let one = [Part::Header(0)];
        let mut ff = Fixed {
            headers: vec![Some(b"\xff")],
            ..Fixed::default()
        };
        let mut fe = Fixed {
            headers: vec![Some(b"\xfe")],
            ..Fixed::default()
        };
        assert_eq!(key(&limit(&one, ";"), &mut ff).as_deref(), Some(";1xff"));
        assert_eq!(key(&limit(&one, ";"), &mut fe).as_deref(), Some(";1xfe"));
    }

    /// Facts with one header, `0`, holding this value.
    struct OneHeader(Vec<u8>);

    impl Facts for OneHeader {
        fn client_ip(&mut self) -> Option<&str> {
            None
        }
        fn header(&mut self, index: usize) -> Option<&[u8]> {
            (index == 0).then_some(self.0.as_slice())
        }
        fn path(&mut self) -> Option<&str> {
            None
        }
        fn route(&mut self) -> Option<&str> {
            None
        }
        fn method(&mut self) -> Option<&str> {
            None
        }
    }

    fn with_header(value: Vec<u8>) -> OneHeader {
        OneHeader(value)
    }

    #[test]
    fn long_keys_are_hashed_to_a_bounded_length() {
        let one = limit(&[Part::Header(0)], "hx-tenant;");
        // "hx-tenant;" + "117:" + 117 bytes = 131 > 128; "hx-tenant;114:" + 114 = 128.
        let at_bound = key(&one, &mut with_header(vec![b'a'; 114])).expect("key");
        assert_eq!(at_bound.len(), MAX_KEY_BYTES);
        assert!(at_bound.starts_with("hx-tenant;114:aaa"), "kept as it is");
        let over = key(&one, &mut with_header(vec![b'a'; 117])).expect("key");
        assert_eq!(over.len(), HASHED_KEY_BYTES);
        assert!(over.starts_with('#'));
        assert!(over[1..].bytes().all(|b| b.is_ascii_hexdigit()));

        // The hash is of the whole key: the same value, the same bucket (on any instance);
        // a value differing in its last byte, or its length, or another limit's prefix, another.
        let big = |last: u8, len: usize| {
            let mut value = vec![b'x'; len];
            value[len - 1] = last;
            value
        };
        let a = key(&one, &mut with_header(big(b'a', 48 << 10))).expect("key");
        assert_eq!(
            key(&one, &mut with_header(big(b'a', 48 << 10))),
            Some(a.clone())
        );
        assert_ne!(
            key(&one, &mut with_header(big(b'b', 48 << 10))),
            Some(a.clone())
        );
        assert_ne!(
            key(&one, &mut with_header(big(b'a', (48 << 10) + 1))),
            Some(a.clone())
        );
        let other = limit(&[Part::Header(0)], "hx-user;");
        assert_ne!(
            key(&other, &mut with_header(big(b'a', 48 << 10))),
            Some(a.clone())
        );
        // Not UTF-8 (hex-encoded first, then hashed): bounded too.
        let binary = key(&one, &mut with_header(vec![0xff; 300])).expect("key");
        assert_eq!(binary.len(), HASHED_KEY_BYTES);
        // The SHA-256 of the whole key, pinned: the mapping must not change between
        // versions of the filter running side by side over one proxy's buckets.
        let pinned = key(&one, &mut with_header(vec![b'x'; 150])).expect("key");
        assert_eq!(
            pinned,
            format!(
                "#{}",
                sha256_hex(&format!("hx-tenant;150:{}", "x".repeat(150)))
            )
        );
    }

    fn sha256_hex(text: &str) -> String {
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn two_thousand_48_kb_keys_stay_small() {
        // What a client sending 2,000 distinct 48 KB `x-tenant` values makes the proxy hold:
        // 2,000 keys of at most 128 bytes (256 KB), not 2,000 × 48 KB (96 MB).
        let one = limit(&[Part::Header(0)], "hx-tenant;");
        let mut keys = std::collections::HashSet::new();
        let mut total = 0;
        let mut out = String::new();
        for i in 0..2000u32 {
            let mut value = vec![b'v'; 48 << 10];
            value[..4].copy_from_slice(&i.to_le_bytes());
            assert!(build(&one, &mut with_header(value), &mut out));
            assert!(out.len() <= MAX_KEY_BYTES);
            assert!(
                out.capacity() <= MAX_KEY_BYTES,
                "the scratch buffer is given back"
            );
            total += out.len();
            keys.insert(out.clone());
        }
        assert_eq!(keys.len(), 2000, "distinct values, distinct keys");
        assert!(total <= 2000 * MAX_KEY_BYTES, "{total} bytes of keys");
    }

    #[test]
    fn ip_without_port() {
        assert_eq!(ip_of("1.2.3.4:5678"), "1.2.3.4");
        assert_eq!(ip_of("[::1]:5678"), "::1");
        assert_eq!(ip_of("[2001:db8::7]:1"), "2001:db8::7");
        assert_eq!(ip_of("2001:db8::7"), "2001:db8::7");
        assert_eq!(ip_of("1.2.3.4"), "1.2.3.4");
        assert_eq!(ip_of("[broken"), "[broken");
    }

    #[test]
    fn path_without_query() {
        assert_eq!(path_of("/a/b?x=1&y=2"), "/a/b");
        assert_eq!(path_of("/a/b"), "/a/b");
        assert_eq!(path_of("/?"), "/");
    }
}
