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

use std::borrow::Cow;
use std::fmt::Write as _;

use sha2::{Digest as _, Sha256};
use weft_sdk::facts::RequestFacts;
use weft_sdk::text;

use crate::config::{Limit, Part};

/// The facts about a request that keys are made of, each fetched from the request (a host call)
/// at most once, and only when a key needs it.
pub struct Facts<'a, R> {
    request: &'a R,
    header_names: &'a [String],
    headers: &'a mut Vec<Option<Option<Vec<u8>>>>,
    client: Option<Option<String>>,
    path: Option<String>,
    route: Option<Option<String>>,
    method: Option<String>,
}

impl<'a, R: RequestFacts> Facts<'a, R> {
    /// The facts of `request`, whose headers are read by their index in `header_names`
    /// ([`Plan::headers`](crate::config::Plan)). Their values are kept in `scratch` (cleared
    /// first), so that the filter can reuse its buffer from request to request.
    pub fn new(
        request: &'a R,
        header_names: &'a [String],
        scratch: &'a mut Vec<Option<Option<Vec<u8>>>>,
    ) -> Self {
        scratch.clear();
        scratch.resize(header_names.len(), None);
        Facts {
            request,
            header_names,
            headers: scratch,
            client: None,
            path: None,
            route: None,
            method: None,
        }
    }

    /// The client's IP address, without the port, as the proxy wrote it.
    fn client_ip(&mut self) -> Option<&str> {
        let request = self.request;
        self.client
            .get_or_insert_with(|| request.client_address().map(Cow::into_owned))
            .as_deref()
            .map(text::address_without_port)
    }

    /// The first value of the header at `index` of the header names.
    fn header(&mut self, index: usize) -> Option<&[u8]> {
        let request = self.request;
        let name = self.header_names.get(index)?;
        self.headers
            .get_mut(index)?
            .get_or_insert_with(|| request.header_bytes(name).map(Cow::into_owned))
            .as_deref()
    }

    /// The path without the query.
    fn path(&mut self) -> Option<&str> {
        let request = self.request;
        Some(text::path_without_query(
            self.path.get_or_insert_with(|| request.path().into_owned()),
        ))
    }

    /// The matched route's name.
    fn route(&mut self) -> Option<&str> {
        let request = self.request;
        self.route
            .get_or_insert_with(|| request.route_name().map(Cow::into_owned))
            .as_deref()
    }

    /// The method.
    fn method(&mut self) -> Option<&str> {
        let request = self.request;
        Some(
            self.method
                .get_or_insert_with(|| request.method().into_owned()),
        )
    }
}

/// The longest key kept as it is; longer ones are hashed.
pub const MAX_KEY_BYTES: usize = 128;
/// The length of a hashed key: `#` and 64 hex digits.
pub const HASHED_KEY_BYTES: usize = 1 + 64;

/// Write `limit`'s key for the request into `out` (cleared first), at most [`MAX_KEY_BYTES`]
/// long. False when a part is missing (no such header, no route): the request is then not
/// subject to the limit.
pub fn build<R: RequestFacts>(limit: &Limit, facts: &mut Facts<'_, R>, out: &mut String) -> bool {
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
fn build_whole<R: RequestFacts>(limit: &Limit, facts: &mut Facts<'_, R>, out: &mut String) -> bool {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use weft_sdk::facts::FakeRequest;

    use super::*;

    /// The header names of the plan the tests' limits read: `Header(0)` is `x-tenant`,
    /// `Header(1)` is `x-user`.
    fn header_names() -> Vec<String> {
        vec!["x-tenant".to_owned(), "x-user".to_owned()]
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

    /// Build `limit`'s key for `request` into `out`, as the filter does.
    fn build_for(limit: &Limit, request: &FakeRequest, out: &mut String) -> bool {
        let names = header_names();
        let mut scratch = vec![Some(Some(b"stale".to_vec()))];
        let mut facts = Facts::new(request, &names, &mut scratch);
        build(limit, &mut facts, out)
    }

    fn key(limit: &Limit, request: &FakeRequest) -> Option<String> {
        let mut out = String::from("stale");
        build_for(limit, request, &mut out).then_some(out)
    }

    /// A request with header `x-tenant` (slot 0) holding this value.
    fn with_header(value: Vec<u8>) -> FakeRequest {
        FakeRequest::get("/").with_header("x-tenant", value)
    }

    #[test]
    fn keys_join_prefix_and_length_prefixed_values() {
        let request = FakeRequest::new("GET", "/api?page=2")
            .with_client_address("10.0.0.1:40000")
            .with_header("x-tenant", "acme")
            .with_header("x-user", "")
            .with_route("app");
        let all = [
            Part::ClientAddress,
            Part::Header(0),
            Part::Header(1),
            Part::Path,
            Part::Route,
            Part::Method,
        ];
        assert_eq!(
            key(&limit(&all, "P;"), &request).as_deref(),
            Some("P;8:10.0.0.14:acme0:4:/api3:app3:GET")
        );
        assert_eq!(key(&limit(&[], ";"), &request).as_deref(), Some(";"));
        let v6 = FakeRequest::get("/").with_client_address("[2001:db8::7]:443");
        assert_eq!(
            key(&limit(&[Part::ClientAddress], "a;"), &v6).as_deref(),
            Some("a;11:2001:db8::7")
        );
    }

    #[test]
    fn facts_are_fetched_once_and_only_when_needed() {
        let request = FakeRequest::get("/a?b")
            .with_client_address("10.0.0.1:40000")
            .with_header("x-user", "u");
        let names = header_names();
        let mut scratch = Vec::new();
        let mut facts = Facts::new(&request, &names, &mut scratch);
        let mut out = String::new();
        let parts = [Part::Header(1), Part::Path, Part::ClientAddress];
        assert!(build(&limit(&parts, "p;"), &mut facts, &mut out));
        assert!(build(&limit(&parts, "q;"), &mut facts, &mut out));
        assert!(!build(
            &limit(&[Part::Path, Part::Route], "r;"),
            &mut facts,
            &mut out
        ));
        assert!(!build(&limit(&[Part::Route], "r;"), &mut facts, &mut out));
        assert_eq!(
            request.reads(),
            ["header x-user", "path", "client_address", "route_name"]
        );
    }

    #[test]
    fn a_missing_part_means_no_key() {
        let request = FakeRequest::get("/");
        let parts = [Part::Path, Part::Header(0)];
        assert_eq!(key(&limit(&parts, "p,h;"), &request), None);
        assert_eq!(key(&limit(&[Part::Route], "r;"), &request), None);
        assert_eq!(key(&limit(&[Part::ClientAddress], "a;"), &request), None);
    }

    #[test]
    fn values_cannot_be_confused() {
        let two = [Part::Header(0), Part::Header(1)];
        let ab_c = FakeRequest::get("/")
            .with_header("x-tenant", "a:b")
            .with_header("x-user", "c");
        let a_bc = FakeRequest::get("/")
            .with_header("x-tenant", "a")
            .with_header("x-user", "b:c");
        assert_ne!(key(&limit(&two, ";"), &ab_c), key(&limit(&two, ";"), &a_bc));
        // Invalid UTF-8 is hex-encoded: distinct bytes stay distinct keys.
        let one = [Part::Header(0)];
        assert_eq!(
            key(&limit(&one, ";"), &with_header(b"\xff".to_vec())).as_deref(),
            Some(";1xff")
        );
        assert_eq!(
            key(&limit(&one, ";"), &with_header(b"\xfe".to_vec())).as_deref(),
            Some(";1xfe")
        );
    }

    #[test]
    fn long_keys_are_hashed_to_a_bounded_length() {
        let one = limit(&[Part::Header(0)], "hx-tenant;");
        // "hx-tenant;" + "117:" + 117 bytes = 131 > 128; "hx-tenant;114:" + 114 = 128.
        let at_bound = key(&one, &with_header(vec![b'a'; 114])).expect("key");
        assert_eq!(at_bound.len(), MAX_KEY_BYTES);
        assert!(at_bound.starts_with("hx-tenant;114:aaa"), "kept as it is");
        let over = key(&one, &with_header(vec![b'a'; 117])).expect("key");
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
        let a = key(&one, &with_header(big(b'a', 48 << 10))).expect("key");
        assert_eq!(
            key(&one, &with_header(big(b'a', 48 << 10))),
            Some(a.clone())
        );
        assert_ne!(
            key(&one, &with_header(big(b'b', 48 << 10))),
            Some(a.clone())
        );
        assert_ne!(
            key(&one, &with_header(big(b'a', (48 << 10) + 1))),
            Some(a.clone())
        );
        let other = limit(&[Part::Header(0)], "hx-user;");
        assert_ne!(
            key(&other, &with_header(big(b'a', 48 << 10))),
            Some(a.clone())
        );
        // Not UTF-8 (hex-encoded first, then hashed): bounded too.
        let binary = key(&one, &with_header(vec![0xff; 300])).expect("key");
        assert_eq!(binary.len(), HASHED_KEY_BYTES);
        // The SHA-256 of the whole key, pinned: the mapping must not change between
        // versions of the filter running side by side over one proxy's buckets.
        let pinned = key(&one, &with_header(vec![b'x'; 150])).expect("key");
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
            assert!(build_for(&one, &with_header(value), &mut out));
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
}
