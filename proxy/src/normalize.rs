//! The request head as the proxy decides it once, before routing and before any filter: one
//! path (RFC 3986 normalized, as Envoy's `normalize_path` + `merge_slashes`), one authority
//! (RFC 9112 §3.2.2, RFC 9113 §8.3.1), and no hop-by-hop fields (RFC 9110 §7.6.1).
//!
//! Routes, filters and the upstream all see what this module produced, so no two of them can
//! read a different path or host from the same request.

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery, Uri};
use http::{Method, Version};

use crate::config::{EscapedSlashes, PathNormalization};
use weft_runtime::{RequestHead, hop};

/// Why a request head was refused: each is a client error (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    /// The target is not origin-form (`*`, or a CONNECT authority).
    #[error("the request target must be a path starting with '/'")]
    NotOriginForm,
    /// `..` would climb above `/`.
    #[error("the request path climbs above the root")]
    EscapesRoot,
    /// `%2F` or `%5C` in the path, with `escaped_slashes: reject`.
    #[error("the request path holds an encoded '/' or '\\'")]
    EncodedSlash,
    /// A raw `\` in the path.
    #[error("the request path holds a '\\'")]
    Backslash,
    /// `%00` in the path.
    #[error("the request path holds an encoded NUL")]
    Nul,
    /// `%` not followed by two hex digits.
    #[error("the request path holds a malformed percent-encoding")]
    BadEscape,
    /// HTTP/1.1 without `Host`.
    #[error("the request has no Host header")]
    MissingHost,
    /// More than one `Host`.
    #[error("the request has more than one Host header")]
    DuplicateHost,
    /// HTTP/2 `host` differs from `:authority`.
    #[error("the request's host header differs from its :authority")]
    HostMismatch,
    /// Userinfo, a bad port, or characters an authority cannot hold.
    #[error("the request authority is malformed")]
    BadAuthority,
}

/// Decide the request's path and authority and drop its hop-by-hop fields, in place.
pub(crate) fn request_head(
    head: &mut RequestHead,
    paths: &PathNormalization,
) -> Result<(), HeadError> {
    hop::strip(&mut head.headers, true);
    if head.method == Method::CONNECT {
        return Err(HeadError::NotOriginForm);
    }
    authority(head)?;
    if let Some(path_and_query) = normalized_target(&head.uri, paths)? {
        let mut parts = std::mem::take(&mut head.uri).into_parts();
        parts.path_and_query = Some(path_and_query);
        head.uri = Uri::from_parts(parts).map_err(|_| HeadError::BadAuthority)?;
    }
    Ok(())
}

/// The normalized path and query of `uri`, or `None` when it is normalized already.
fn normalized_target(
    uri: &Uri,
    options: &PathNormalization,
) -> Result<Option<PathAndQuery>, HeadError> {
    let path = uri.path();
    if !path.starts_with('/') {
        return Err(HeadError::NotOriginForm);
    }
    let normalized = normalize_path(path, options)?;
    let Cow::Owned(mut path) = normalized else {
        return Ok(None);
    };
    if let Some(query) = uri.query() {
        path.push('?');
        path.push_str(query);
    }
    // Every byte came from a valid target or is a character normalization writes itself.
    PathAndQuery::try_from(path)
        .map(Some)
        .map_err(|_| HeadError::BadEscape)
}

/// Normalize an origin-form path: decode percent-encoded unreserved characters, upper-case the
/// remaining escapes, merge slashes (when asked) and remove dot segments. Borrows when the path
/// is already normal, which is the common case and costs one scan.
pub(crate) fn normalize_path<'a>(
    path: &'a str,
    options: &PathNormalization,
) -> Result<Cow<'a, str>, HeadError> {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') {
        return Err(HeadError::Backslash);
    }
    if !options.enabled {
        return Ok(Cow::Borrowed(path));
    }
    if !needs_work(bytes, options.merge_slashes) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(bytes, options.escaped_slashes)?;
    let mut out: Vec<&[u8]> = Vec::new();
    // Segments after the leading '/'. A path ending in '/', '.' or '..' keeps a trailing '/'.
    let mut segments = decoded[1..].split(|b| *b == b'/').peekable();
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            b"." => trailing_slash = last,
            b".." => {
                if out.pop().is_none() {
                    return Err(HeadError::EscapesRoot);
                }
                trailing_slash = last;
            }
            b"" if options.merge_slashes => trailing_slash = last,
            _ => {
                out.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut path = Vec::with_capacity(decoded.len());
    for segment in &out {
        path.push(b'/');
        path.extend_from_slice(segment);
    }
    if trailing_slash || out.is_empty() {
        path.push(b'/');
    }
    // Only ASCII was decoded; everything else was copied from a `&str`.
    String::from_utf8(path)
        .map(Cow::Owned)
        .map_err(|_| HeadError::BadEscape)
}

/// Whether the path holds anything normalization would change: an escape, an empty segment
/// (when merging) or a segment starting with '.'.
fn needs_work(bytes: &[u8], merge_slashes: bool) -> bool {
    bytes.iter().enumerate().any(|(i, b)| match b {
        b'%' => true,
        b'/' => match bytes.get(i + 1) {
            Some(b'/') => merge_slashes,
            Some(b'.') => true,
            _ => false,
        },
        _ => false,
    })
}

/// Decode `%XX` escapes of unreserved characters (RFC 3986 §2.3); keep other escapes,
/// upper-cased. Encoded slashes, backslashes and NULs are refused (or kept encoded).
fn decode_unreserved(bytes: &[u8], slashes: EscapedSlashes) -> Result<Vec<u8>, HeadError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex_value),
            bytes.get(i + 2).copied().and_then(hex_value),
        ) else {
            return Err(HeadError::BadEscape);
        };
        let value = hi << 4 | lo;
        match value {
            0 => return Err(HeadError::Nul),
            b'/' | b'\\' if slashes == EscapedSlashes::Reject => {
                return Err(HeadError::EncodedSlash);
            }
            v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                out.push(v);
            }
            _ => {
                out.push(b'%');
                out.push(bytes[i + 1].to_ascii_uppercase());
                out.push(bytes[i + 2].to_ascii_uppercase());
            }
        }
        i += 3;
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decide the one authority of the request and make `Host` agree with it.
///
/// HTTP/1.x: an absolute-form target's authority wins and `Host` is rewritten to match; an
/// HTTP/1.1 request needs exactly one `Host`. HTTP/2: `host`, when sent, must equal
/// `:authority` and is then dropped (the proxy writes `Host` again for HTTP/1.1 upstreams).
fn authority(head: &mut RequestHead) -> Result<(), HeadError> {
    let mut hosts = head.headers.get_all(header::HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(HeadError::DuplicateHost);
    }
    if let Some(authority) = head.uri.authority() {
        check_authority(authority)?;
    }
    let is_h2 = head.version == Version::HTTP_2;
    match (head.uri.authority().cloned(), host) {
        (Some(authority), host) if is_h2 => {
            if let Some(host) = host {
                if !host
                    .as_bytes()
                    .eq_ignore_ascii_case(authority.as_str().as_bytes())
                {
                    return Err(HeadError::HostMismatch);
                }
                head.headers.remove(header::HOST);
            }
        }
        (Some(authority), _) => {
            let value =
                HeaderValue::from_str(authority.as_str()).map_err(|_| HeadError::BadAuthority)?;
            head.headers.insert(header::HOST, value);
        }
        (None, Some(host)) => {
            if !host.is_empty() {
                let authority =
                    Authority::try_from(host.as_bytes()).map_err(|_| HeadError::BadAuthority)?;
                check_authority(&authority)?;
            }
        }
        (None, None) if head.version == Version::HTTP_11 => return Err(HeadError::MissingHost),
        (None, None) => {}
    }
    Ok(())
}

/// An authority a proxy may forward: no userinfo, a non-empty host, a port up to 65535.
fn check_authority(authority: &Authority) -> Result<(), HeadError> {
    let text = authority.as_str();
    if text.contains('@') || authority.host().is_empty() {
        return Err(HeadError::BadAuthority);
    }
    // `port()` is `None` for an empty port ("host:"), which RFC 3986 allows; digits past
    // 65535 parse as a port whose `as_u16` fails.
    let port_text = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => Some(&text[i + 1..]),
        _ => None,
    };
    if let Some(port) = port_text
        && !port.is_empty()
        && port.parse::<u16>().is_err()
    {
        return Err(HeadError::BadAuthority);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> PathNormalization {
        PathNormalization::default()
    }

    fn norm(path: &str) -> Result<String, HeadError> {
        normalize_path(path, &opts()).map(Cow::into_owned)
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/admin",
            "/a/b/c/",
            "/a.b/c",
            "/a/b.",
            "/.well-known-ish",
        ] {
            let out = normalize_path(path, &opts()).expect("valid");
            assert!(
                matches!(out, Cow::Borrowed(_)) || path.contains("/."),
                "{path} was copied"
            );
            assert_eq!(out, path);
        }
    }

    #[test]
    fn spellings_of_one_path_normalize_to_it() {
        for path in [
            "/admin",
            "//admin",
            "///admin",
            "/./admin",
            "/x/../admin",
            "/x/y/../../admin",
            "/%61dmin",
            "/%61%64%6D%69%6E",
            "/x/%2e%2e/admin",
            "/x/%2E%2E/admin",
            "/x/.%2e/admin",
            "/./x/./../admin",
        ] {
            assert_eq!(norm(path).as_deref(), Ok("/admin"), "{path}");
        }
    }

    #[test]
    fn trailing_dot_segments_leave_a_directory() {
        assert_eq!(norm("/admin/.").as_deref(), Ok("/admin/"));
        assert_eq!(norm("/admin/x/..").as_deref(), Ok("/admin/"));
        assert_eq!(norm("/admin/x/%2e%2e").as_deref(), Ok("/admin/"));
        assert_eq!(norm("/admin//").as_deref(), Ok("/admin/"));
        assert_eq!(norm("/.").as_deref(), Ok("/"));
        assert_eq!(norm("/x/..").as_deref(), Ok("/"));
    }

    #[test]
    fn escapes_other_than_unreserved_are_kept_upper_cased() {
        assert_eq!(norm("/a%20b").as_deref(), Ok("/a%20b"));
        assert_eq!(norm("/a%3fb").as_deref(), Ok("/a%3Fb"));
        assert_eq!(norm("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
    }

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(norm("/.."), Err(HeadError::EscapesRoot));
        assert_eq!(norm("/../admin"), Err(HeadError::EscapesRoot));
        assert_eq!(norm("/x/../../admin"), Err(HeadError::EscapesRoot));
        assert_eq!(norm("/%2e%2e/admin"), Err(HeadError::EscapesRoot));
        assert_eq!(norm("/x%2Fadmin"), Err(HeadError::EncodedSlash));
        assert_eq!(norm("/x%2fadmin"), Err(HeadError::EncodedSlash));
        assert_eq!(norm("/x%5Cadmin"), Err(HeadError::EncodedSlash));
        assert_eq!(norm("/x\\admin"), Err(HeadError::Backslash));
        assert_eq!(norm("/admin%00"), Err(HeadError::Nul));
        assert_eq!(norm("/admin%"), Err(HeadError::BadEscape));
        assert_eq!(norm("/admin%4"), Err(HeadError::BadEscape));
        assert_eq!(norm("/admin%zz"), Err(HeadError::BadEscape));
    }

    #[test]
    fn options_keep_slashes_or_turn_normalization_off() {
        let keep = PathNormalization {
            escaped_slashes: EscapedSlashes::Keep,
            ..opts()
        };
        assert_eq!(
            normalize_path("/x%2fadmin", &keep).as_deref(),
            Ok("/x%2Fadmin")
        );
        let no_merge = PathNormalization {
            merge_slashes: false,
            ..opts()
        };
        assert_eq!(normalize_path("/a//b", &no_merge).as_deref(), Ok("/a//b"));
        assert_eq!(normalize_path("/a//../b", &no_merge).as_deref(), Ok("/a/b"));
        let off = PathNormalization {
            enabled: false,
            ..opts()
        };
        assert_eq!(normalize_path("/x/../a", &off).as_deref(), Ok("/x/../a"));
        assert_eq!(
            normalize_path("/x\\a", &off),
            Err(HeadError::Backslash),
            "a backslash is refused even without normalization"
        );
    }

    fn head(version: Version, uri: &str, hosts: &[&str]) -> RequestHead {
        let mut head = RequestHead {
            version,
            uri: uri.parse().expect("test uri"),
            ..RequestHead::default()
        };
        for h in hosts {
            head.headers
                .append(header::HOST, HeaderValue::from_str(h).expect("test host"));
        }
        head
    }

    fn decide(mut head: RequestHead) -> Result<RequestHead, HeadError> {
        request_head(&mut head, &opts()).map(|()| head)
    }

    #[test]
    fn absolute_form_wins_over_host() {
        let head = decide(head(
            Version::HTTP_11,
            "http://evil.example/x",
            &["good.example"],
        ))
        .expect("valid");
        assert_eq!(head.authority(), Some("evil.example"));
        assert_eq!(head.headers[header::HOST], "evil.example");
    }

    #[test]
    fn http2_host_must_equal_authority() {
        let ok = decide(head(Version::HTTP_2, "http://a.example/x", &["A.example"]))
            .expect("same authority");
        assert_eq!(ok.authority(), Some("a.example"));
        assert!(ok.headers.get(header::HOST).is_none());
        assert_eq!(
            decide(head(Version::HTTP_2, "http://a.example/x", &["b.example"])).err(),
            Some(HeadError::HostMismatch)
        );
    }

    #[test]
    fn host_headers_are_checked() {
        assert_eq!(
            decide(head(Version::HTTP_11, "/x", &[])).err(),
            Some(HeadError::MissingHost)
        );
        assert!(decide(head(Version::HTTP_10, "/x", &[])).is_ok());
        assert_eq!(
            decide(head(Version::HTTP_11, "/x", &["a", "b"])).err(),
            Some(HeadError::DuplicateHost)
        );
        for bad in [
            "user@a.example",
            "u@v@a.example",
            "a.example:99999",
            "a.example:x",
        ] {
            assert_eq!(
                decide(head(Version::HTTP_11, "/x", &[bad])).err(),
                Some(HeadError::BadAuthority),
                "{bad}"
            );
        }
        for good in [
            "a.example",
            "a.example:8080",
            "[::1]:80",
            "[::1]",
            "10.0.0.1:0",
        ] {
            assert!(
                decide(head(Version::HTTP_11, "/x", &[good])).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn the_normalized_path_keeps_its_query() {
        let head = decide(head(Version::HTTP_11, "//a/./b?x=/../y", &["h"])).expect("valid");
        assert_eq!(head.uri.path(), "/a/b");
        assert_eq!(head.uri.query(), Some("x=/../y"));
    }
}
