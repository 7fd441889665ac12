//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection and are never forwarded.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// Whether `name` is a hop-by-hop header the proxy manages itself.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::TE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Remove hop-by-hop headers, and every header the `connection` header names.
///
/// `te: trailers` survives on requests: gRPC needs it end to end, and it only announces that
/// the client accepts trailers, which the proxy passes through.
pub fn strip(headers: &mut HeaderMap, is_request: bool) {
    let keep_te_trailers = is_request
        && headers
            .get_all(header::TE)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if keep_te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip(&mut h, true);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-keep", "te"]);

        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("gzip"));
        strip(&mut h, true);
        assert!(h.is_empty(), "te other than trailers is dropped");

        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        strip(&mut h, false);
        assert!(h.is_empty(), "responses never carry te");
    }
}
