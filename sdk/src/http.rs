//! Typed handles over the host's request, response and body resources.

use std::fmt;

use crate::bindings::weft::filter::http as raw;

/// Give a `#[repr(transparent)]` wrapper of a generated resource handle a constructor from a
/// borrowed handle.
macro_rules! wrap_borrowed {
    ($wrapper:ident, $raw:ty) => {
        impl $wrapper {
            #[allow(unsafe_code)]
            pub(crate) fn from_raw(raw: &$raw) -> &$wrapper {
                // SAFETY: the wrapper is `#[repr(transparent)]` over `$raw`, so the two types have
                // the same layout, and the returned reference keeps the input's lifetime. The
                // wrapper never drops the handle: hooks only ever see borrowed references.
                unsafe { &*(raw as *const $raw).cast::<$wrapper>() }
            }
        }
    };
}

/// The head of an HTTP request: method, target, headers and connection properties.
///
/// Mutable during request hooks; read-only during response hooks, where it describes the request
/// that produced the response (edits then fail with [`EditError::ReadOnly`]).
///
/// Header names are case-insensitive. Header values are bytes: [`Request::header`] decodes them
/// as UTF-8 (lossily), [`Request::header_bytes`] returns them as they are.
#[derive(Debug)]
#[repr(transparent)]
pub struct Request {
    raw: raw::Request,
}

wrap_borrowed!(Request, raw::Request);

impl Request {
    /// The method, e.g. `GET`.
    pub fn method(&self) -> String {
        self.raw.method()
    }

    /// The path and query as received, e.g. `/users/7?verbose=1`.
    pub fn path(&self) -> String {
        self.raw.path()
    }

    /// Replace the path and query sent upstream.
    ///
    /// Errors: [`EditError::InvalidPath`] unless it starts with `/`; [`EditError::ReadOnly`] in
    /// response hooks.
    pub fn set_path(&self, path: &str) -> Result<(), EditError> {
        self.raw.set_path(path).map_err(EditError::from_raw)
    }

    /// `http` or `https`, as seen by the proxy on the downstream connection.
    pub fn scheme(&self) -> String {
        self.raw.scheme()
    }

    /// The authority (`:authority` in HTTP/2, `Host` in HTTP/1.1), if any.
    pub fn authority(&self) -> Option<String> {
        self.raw.authority()
    }

    /// The first value of header `name` as text (invalid UTF-8 replaced by `U+FFFD`), or `None`
    /// when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.header(name).map(lossy_utf8)
    }

    /// The first value of header `name` as bytes, or `None` when absent.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.raw.header(name)
    }

    /// Every value of header `name`, in order; empty when absent.
    pub fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.raw.header_values(name)
    }

    /// All header fields, in order, with lower-case names. Copies every header into the filter:
    /// prefer [`Request::header`] when you need a few.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.raw.headers()
    }

    /// Set header `name` to `value`, replacing all previous values.
    ///
    /// Errors: [`EditError::InvalidName`], [`EditError::InvalidValue`], [`EditError::ReadOnly`]
    /// (response hooks, hop-by-hop headers).
    pub fn set_header(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), EditError> {
        self.raw
            .set_header(name, value.as_ref())
            .map_err(EditError::from_raw)
    }

    /// Add one more value for header `name`, keeping existing ones.
    ///
    /// Errors: as for [`Request::set_header`].
    pub fn append_header(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), EditError> {
        self.raw
            .append_header(name, value.as_ref())
            .map_err(EditError::from_raw)
    }

    /// Remove every value of header `name`. Removing an absent header is not an error.
    ///
    /// Errors: [`EditError::InvalidName`], [`EditError::ReadOnly`].
    pub fn remove_header(&self, name: &str) -> Result<(), EditError> {
        self.raw.remove_header(name).map_err(EditError::from_raw)
    }

    /// The downstream peer's socket address, e.g. `127.0.0.1:53122`, if known.
    pub fn client_address(&self) -> Option<String> {
        self.raw.client_address()
    }

    /// The name of the route the request matched, if any.
    pub fn route_name(&self) -> Option<String> {
        self.raw.route_name()
    }

    /// The name of the listener that accepted the request.
    pub fn listener_name(&self) -> String {
        self.raw.listener_name()
    }

    /// Which way that listener faces.
    pub fn direction(&self) -> Direction {
        match self.raw.direction() {
            raw::Direction::Inbound => Direction::Inbound,
            raw::Direction::Outbound => Direction::Outbound,
        }
    }

    /// The authenticated caller on an mTLS connection: its SPIFFE ID,
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`. `None` for plaintext
    /// (also on a permissive listener, where both arrive).
    pub fn peer_identity(&self) -> Option<String> {
        self.raw.peer_identity()
    }

    /// The name of the upstream the request will be sent to: the route's, or the one a filter
    /// chose with [`Request::set_upstream`].
    pub fn upstream(&self) -> Option<String> {
        self.raw.upstream()
    }

    /// Send the request to the upstream named `name` instead of the route's. The proxy checks
    /// the name once the request hooks are done: an unknown upstream gets a 503 naming it.
    ///
    /// Errors: [`EditError::ReadOnly`] in response hooks.
    pub fn set_upstream(&self, name: &str) -> Result<(), EditError> {
        self.raw.set_upstream(name).map_err(EditError::from_raw)
    }

    /// Add a header to the response this request gets, whoever produces it (the upstream, a
    /// filter's local response, the proxy). The proxy appends it after the response hooks ran,
    /// so a request hook can attach information without declaring a response hook.
    ///
    /// Errors: [`EditError::InvalidName`], [`EditError::InvalidValue`], [`EditError::ReadOnly`]
    /// (response hooks, headers the proxy manages).
    pub fn add_response_header(
        &self,
        name: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<(), EditError> {
        self.raw
            .add_response_header(name, value.as_ref())
            .map_err(EditError::from_raw)
    }

    /// This filter's state for this request, as an earlier hook of the same request left it
    /// with [`Request::set_state`]; `None` until then. Other filters have their own and never
    /// see this one's; the proxy drops it when the request ends.
    ///
    /// Instances are pooled and serve many requests, so a value one hook keeps in the
    /// instance is not there for the next hook of the same request: keep it here.
    pub fn state(&self) -> Option<Vec<u8>> {
        self.raw.state()
    }

    /// Replace this filter's state for this request; works in every hook.
    ///
    /// Errors: [`EditError::InvalidValue`] when longer than 64 KiB.
    pub fn set_state(&self, value: impl AsRef<[u8]>) -> Result<(), EditError> {
        self.raw
            .set_state(value.as_ref())
            .map_err(EditError::from_raw)
    }
}

/// The head of an HTTP response from the upstream.
#[derive(Debug)]
#[repr(transparent)]
pub struct Response {
    raw: raw::Response,
}

wrap_borrowed!(Response, raw::Response);

impl Response {
    /// The status code, e.g. `200`.
    pub fn status(&self) -> u16 {
        self.raw.status()
    }

    /// Replace the status code sent downstream.
    ///
    /// Errors: [`EditError::InvalidValue`] unless `100 <= status <= 999`.
    pub fn set_status(&self, status: u16) -> Result<(), EditError> {
        self.raw.set_status(status).map_err(EditError::from_raw)
    }

    /// The first value of header `name` as text (invalid UTF-8 replaced by `U+FFFD`), or `None`
    /// when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.raw.header(name).map(lossy_utf8)
    }

    /// The first value of header `name` as bytes, or `None` when absent.
    pub fn header_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.raw.header(name)
    }

    /// Every value of header `name`, in order; empty when absent.
    pub fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.raw.header_values(name)
    }

    /// All header fields, in order, with lower-case names.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.raw.headers()
    }

    /// Set header `name` to `value`, replacing all previous values.
    ///
    /// Errors: [`EditError::InvalidName`], [`EditError::InvalidValue`], [`EditError::ReadOnly`]
    /// (hop-by-hop headers).
    pub fn set_header(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), EditError> {
        self.raw
            .set_header(name, value.as_ref())
            .map_err(EditError::from_raw)
    }

    /// Add one more value for header `name`, keeping existing ones.
    ///
    /// Errors: as for [`Response::set_header`].
    pub fn append_header(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), EditError> {
        self.raw
            .append_header(name, value.as_ref())
            .map_err(EditError::from_raw)
    }

    /// Remove every value of header `name`. Removing an absent header is not an error.
    ///
    /// Errors: [`EditError::InvalidName`], [`EditError::ReadOnly`].
    pub fn remove_header(&self, name: &str) -> Result<(), EditError> {
        self.raw.remove_header(name).map_err(EditError::from_raw)
    }
}

/// A complete message body, buffered by the proxy because the filter declared a body hook.
#[derive(Debug)]
#[repr(transparent)]
pub struct Body {
    raw: raw::Body,
}

wrap_borrowed!(Body, raw::Body);

impl Body {
    /// The body's length in bytes.
    pub fn size(&self) -> u64 {
        self.raw.size()
    }

    /// A copy of the whole body.
    pub fn read(&self) -> Vec<u8> {
        self.raw.read()
    }

    /// Replace the whole body. The proxy fixes `content-length`.
    pub fn write(&self, contents: impl AsRef<[u8]>) {
        self.raw.write(contents.as_ref());
    }
}

/// Which way the listener that accepted a request faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Traffic from the mesh to the local service.
    Inbound,
    /// Traffic from the local service to the mesh.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`, as in the proxy configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the proxy refused an edit of a request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EditError {
    /// The name is not a valid HTTP header name (RFC 9110 token).
    InvalidName,
    /// The value contains bytes a header value may not hold (CR, LF, NUL, or other control
    /// characters except horizontal tab), or a status is outside `100..=999`.
    InvalidValue,
    /// The path is not a valid origin-form request target (must start with `/`).
    InvalidPath,
    /// This field cannot be changed here: request headers are read-only during response hooks,
    /// and hop-by-hop headers (`connection`, `transfer-encoding`, ...) and pseudo-headers are
    /// managed by the proxy.
    ReadOnly,
}

impl EditError {
    fn from_raw(raw: raw::EditError) -> EditError {
        match raw {
            raw::EditError::InvalidName => EditError::InvalidName,
            raw::EditError::InvalidValue => EditError::InvalidValue,
            raw::EditError::InvalidPath => EditError::InvalidPath,
            raw::EditError::ReadOnly => EditError::ReadOnly,
        }
    }
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EditError::InvalidName => "invalid header name",
            EditError::InvalidValue => "invalid value",
            EditError::InvalidPath => "invalid path",
            EditError::ReadOnly => "read-only here",
        })
    }
}

impl std::error::Error for EditError {}

fn lossy_utf8(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_utf8_keeps_valid_text_and_replaces_invalid_bytes() {
        assert_eq!(lossy_utf8(b"caf\xc3\xa9".to_vec()), "café");
        assert_eq!(lossy_utf8(b"a\xffb".to_vec()), "a\u{fffd}b");
    }

    #[test]
    fn edit_error_messages() {
        assert_eq!(EditError::ReadOnly.to_string(), "read-only here");
        assert_eq!(Direction::Outbound.to_string(), "outbound");
    }
}
