//! Building a limit's bucket key from the facts of a request.
//!
//! A key is the limit's prefix (which descriptors it is made of) followed by each part's value,
//! length-prefixed (`<len>:<text>`), so that no two different sets of values give the same key
//! whatever bytes they hold. Header values that are not UTF-8 are hex-encoded (`<len>x<hex>`)
//! rather than decoded lossily, which would merge distinct values.

use std::fmt::Write as _;

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

/// Write `limit`'s key for the request into `out` (cleared first). False when a part is
/// missing (no such header, no route): the request is then not subject to the limit.
pub fn build(limit: &Limit, facts: &mut impl Facts, out: &mut String) -> bool {
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

    fn key(limit: &Limit, facts: &mut Fixed) -> Option<String> {
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
