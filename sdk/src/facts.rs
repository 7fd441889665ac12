//! What filters read from and do to a request, as traits, so that the decision logic of a filter
//! can be written once against [`RequestFacts`] (and [`RequestEdits`]) and run on the proxy's
//! [`Request`] in wasm and on a [`FakeRequest`] in native unit tests.
//!
//! ```
//! use weft_sdk::facts::{FakeRequest, RequestFacts};
//!
//! /// The tenant a request is for: its `x-tenant` header, else the first path segment.
//! fn tenant(request: &impl RequestFacts) -> String {
//!     match request.header_bytes("x-tenant") {
//!         Some(value) => String::from_utf8_lossy(&value).into_owned(),
//!         None => {
//!             let path = request.path();
//!             path.trim_start_matches('/').split(['/', '?']).next().unwrap_or("").to_owned()
//!         }
//!     }
//! }
//!
//! let request = FakeRequest::get("/acme/orders?page=2");
//! assert_eq!(tenant(&request), "acme");
//! assert_eq!(tenant(&request.with_header("X-Tenant", "globex")), "globex");
//! ```
//!
//! In a hook, pass the [`Request`] itself: `tenant(request)`.
//!
//! Each method of the real request is one call into the proxy that copies the value into the
//! filter; the methods return [`Cow`] so that the real request hands over that copy
//! ([`Cow::Owned`], no further copy) while the fake lends what it holds ([`Cow::Borrowed`]).
//! Filters that read a fact several times should keep it rather than ask again.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::IpAddr;

use crate::http::{Direction, EditError, Request};
use crate::text;

/// What a filter can read about a request: the subset of [`Request`] that describes it.
///
/// Implemented for [`Request`] (every call crosses into the proxy) and [`FakeRequest`] (in
/// memory, for tests). Header names are case-insensitive.
pub trait RequestFacts {
    /// The method, e.g. `GET`.
    fn method(&self) -> Cow<'_, str>;
    /// `http` or `https`, as seen by the proxy on the downstream connection.
    fn scheme(&self) -> Cow<'_, str>;
    /// The path and query as received, e.g. `/users/7?verbose=1`.
    fn path(&self) -> Cow<'_, str>;
    /// The authority (`:authority` in HTTP/2, `Host` in HTTP/1.1), if any.
    fn authority(&self) -> Option<Cow<'_, str>>;
    /// The first value of header `name` as bytes, or `None` when absent.
    fn header_bytes(&self, name: &str) -> Option<Cow<'_, [u8]>>;
    /// Every value of header `name`, in order; empty when absent.
    fn header_values(&self, name: &str) -> Vec<Vec<u8>>;
    /// The downstream peer's socket address, e.g. `127.0.0.1:53122` or `[::1]:53122`, if
    /// known.
    fn client_address(&self) -> Option<Cow<'_, str>>;
    /// The authenticated peer identity (mTLS), e.g. a SPIFFE ID.
    fn peer_identity(&self) -> Option<Cow<'_, str>>;
    /// The name of the route the request matched, if any.
    fn route_name(&self) -> Option<Cow<'_, str>>;
    /// The name of the upstream the request will be sent to: the route's, or one a filter chose.
    fn upstream(&self) -> Option<Cow<'_, str>>;
    /// The name of the listener that accepted the request.
    fn listener_name(&self) -> Cow<'_, str>;
    /// Which way that listener faces.
    fn direction(&self) -> Direction;

    /// The client's IP address: [`RequestFacts::client_address`] without the port
    /// ([`text::client_ip`]). The proxy reports the TCP peer; `x-forwarded-for` is not read.
    fn client_ip(&self) -> Option<IpAddr> {
        self.client_address()
            .and_then(|address| text::client_ip(&address))
    }
}

/// What a filter can change in a request during a request hook: the editing subset of
/// [`Request`]. Errors are the proxy's (see [`EditError`]).
pub trait RequestEdits {
    /// Replace the path and query sent upstream.
    fn set_path(&self, path: &str) -> Result<(), EditError>;
    /// Send the request to the upstream named `name`.
    fn set_upstream(&self, name: &str) -> Result<(), EditError>;
    /// Set header `name` to `value`, replacing all previous values.
    fn set_header(&self, name: &str, value: &[u8]) -> Result<(), EditError>;
    /// Add one more value for header `name`, keeping existing ones.
    fn append_header(&self, name: &str, value: &[u8]) -> Result<(), EditError>;
    /// Remove every value of header `name`.
    fn remove_header(&self, name: &str) -> Result<(), EditError>;
    /// Add a header to the response this request gets, whoever produces it.
    fn add_response_header(&self, name: &str, value: &[u8]) -> Result<(), EditError>;
}

impl RequestFacts for Request {
    fn method(&self) -> Cow<'_, str> {
        Cow::Owned(Request::method(self))
    }

    fn scheme(&self) -> Cow<'_, str> {
        Cow::Owned(Request::scheme(self))
    }

    fn path(&self) -> Cow<'_, str> {
        Cow::Owned(Request::path(self))
    }

    fn authority(&self) -> Option<Cow<'_, str>> {
        Request::authority(self).map(Cow::Owned)
    }

    fn header_bytes(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        Request::header_bytes(self, name).map(Cow::Owned)
    }

    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        Request::header_values(self, name)
    }

    fn client_address(&self) -> Option<Cow<'_, str>> {
        Request::client_address(self).map(Cow::Owned)
    }

    fn peer_identity(&self) -> Option<Cow<'_, str>> {
        Request::peer_identity(self).map(Cow::Owned)
    }

    fn route_name(&self) -> Option<Cow<'_, str>> {
        Request::route_name(self).map(Cow::Owned)
    }

    fn upstream(&self) -> Option<Cow<'_, str>> {
        Request::upstream(self).map(Cow::Owned)
    }

    fn listener_name(&self) -> Cow<'_, str> {
        Cow::Owned(Request::listener_name(self))
    }

    fn direction(&self) -> Direction {
        Request::direction(self)
    }
}

impl RequestEdits for Request {
    fn set_path(&self, path: &str) -> Result<(), EditError> {
        Request::set_path(self, path)
    }

    fn set_upstream(&self, name: &str) -> Result<(), EditError> {
        Request::set_upstream(self, name)
    }

    fn set_header(&self, name: &str, value: &[u8]) -> Result<(), EditError> {
        Request::set_header(self, name, value)
    }

    fn append_header(&self, name: &str, value: &[u8]) -> Result<(), EditError> {
        Request::append_header(self, name, value)
    }

    fn remove_header(&self, name: &str) -> Result<(), EditError> {
        Request::remove_header(self, name)
    }

    fn add_response_header(&self, name: &str, value: &[u8]) -> Result<(), EditError> {
        Request::add_response_header(self, name, value)
    }
}

/// A request held in memory, for native unit tests of filter logic written against
/// [`RequestFacts`] and [`RequestEdits`].
///
/// Build it with [`FakeRequest::new`] and the `with_*` methods; read what the code under test did
/// with [`FakeRequest::headers`], [`FakeRequest::response_headers`],
/// [`RequestFacts::upstream`] and [`FakeRequest::reads`] (every fact it asked for, in order:
/// check that it asks only for what it needs).
///
/// Edits are checked as the proxy checks them: an invalid header name is
/// [`EditError::InvalidName`], a value with control characters [`EditError::InvalidValue`], a
/// header in [`text::MANAGED_HEADERS`] [`EditError::ReadOnly`], a path not starting with `/`
/// [`EditError::InvalidPath`]; [`FakeRequest::with_refusal`] makes more edits fail.
///
/// ```
/// use weft_sdk::EditError;
/// use weft_sdk::facts::{FakeRequest, RequestEdits, RequestFacts};
///
/// let request = FakeRequest::new("POST", "/orders")
///     .with_header("Cookie", "a=1")
///     .with_header("cookie", "b=2")
///     .with_client_address("10.0.0.7:40000")
///     .with_route("orders");
/// assert_eq!(request.header_values("COOKIE"), [b"a=1".to_vec(), b"b=2".to_vec()]);
/// assert_eq!(request.client_ip(), Some("10.0.0.7".parse().unwrap()));
///
/// request.set_header("x-user", b"alice").unwrap();
/// assert_eq!(request.set_header("connection", b"close"), Err(EditError::ReadOnly));
/// assert_eq!(request.header_bytes("x-user").as_deref(), Some(&b"alice"[..]));
/// assert_eq!(request.reads(), ["header cookie", "client_address", "header x-user"]);
/// ```
#[derive(Debug, Clone)]
pub struct FakeRequest {
    method: String,
    scheme: String,
    path: RefCell<String>,
    authority: Option<String>,
    /// Lower-case names, in order.
    headers: RefCell<Vec<(String, Vec<u8>)>>,
    client_address: Option<String>,
    peer_identity: Option<String>,
    route_name: Option<String>,
    upstream: RefCell<Option<String>>,
    listener_name: String,
    direction: Direction,
    response_headers: RefCell<Vec<(String, Vec<u8>)>>,
    /// Lower-case header names whose edits fail, with the error.
    refusals: Vec<(String, EditError)>,
    reads: RefCell<Vec<String>>,
}

impl FakeRequest {
    /// A request with this method and path (and query), over `http`, on an inbound listener
    /// named `inbound`, with no headers, route, upstream, client address or peer identity.
    pub fn new(method: &str, path: &str) -> FakeRequest {
        FakeRequest {
            method: method.to_owned(),
            scheme: "http".to_owned(),
            path: RefCell::new(path.to_owned()),
            authority: None,
            headers: RefCell::new(Vec::new()),
            client_address: None,
            peer_identity: None,
            route_name: None,
            upstream: RefCell::new(None),
            listener_name: "inbound".to_owned(),
            direction: Direction::Inbound,
            response_headers: RefCell::new(Vec::new()),
            refusals: Vec::new(),
            reads: RefCell::new(Vec::new()),
        }
    }

    /// A `GET` of `path`.
    pub fn get(path: &str) -> FakeRequest {
        FakeRequest::new("GET", path)
    }

    /// With one more value of header `name` (stored lower-cased), after any others. Any bytes are
    /// accepted, so tests can send what a hostile client would.
    pub fn with_header(self, name: &str, value: impl AsRef<[u8]>) -> FakeRequest {
        self.headers
            .borrow_mut()
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// With this scheme (default `http`).
    pub fn with_scheme(mut self, scheme: &str) -> FakeRequest {
        self.scheme = scheme.to_owned();
        self
    }

    /// With this authority.
    pub fn with_authority(mut self, authority: &str) -> FakeRequest {
        self.authority = Some(authority.to_owned());
        self
    }

    /// With this client socket address, as the proxy writes it: `10.0.0.7:40000`,
    /// `[::1]:40000`.
    pub fn with_client_address(mut self, address: &str) -> FakeRequest {
        self.client_address = Some(address.to_owned());
        self
    }

    /// With this mTLS peer identity.
    pub fn with_peer_identity(mut self, identity: &str) -> FakeRequest {
        self.peer_identity = Some(identity.to_owned());
        self
    }

    /// With this route name.
    pub fn with_route(mut self, route: &str) -> FakeRequest {
        self.route_name = Some(route.to_owned());
        self
    }

    /// With this upstream (the route's, before any filter chose one).
    pub fn with_upstream(self, upstream: &str) -> FakeRequest {
        *self.upstream.borrow_mut() = Some(upstream.to_owned());
        self
    }

    /// Accepted by a listener of this name and direction.
    pub fn with_listener(mut self, name: &str, direction: Direction) -> FakeRequest {
        self.listener_name = name.to_owned();
        self.direction = direction;
        self
    }

    /// Every edit of header `name` (set, append, remove, add to the response) fails with
    /// `error`, as the proxy might refuse it.
    pub fn with_refusal(mut self, name: &str, error: EditError) -> FakeRequest {
        self.refusals.push((name.to_ascii_lowercase(), error));
        self
    }

    /// All headers, in order, with lower-case names: what the request holds now, edits included.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.headers.borrow().clone()
    }

    /// The values of header `name` as text (lossily), after edits: handy in assertions.
    pub fn header_texts(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The headers added with [`RequestEdits::add_response_header`], in order.
    pub fn response_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.response_headers.borrow().clone()
    }

    /// Every fact read so far, in order: `method`, `scheme`, `path`, `authority`,
    /// `header <name>` (for [`RequestFacts::header_bytes`] and [`RequestFacts::header_values`]),
    /// `client_address`, `peer_identity`, `route_name`, `upstream`, `listener_name`,
    /// `direction`. The fake's own accessors are not recorded.
    pub fn reads(&self) -> Vec<String> {
        self.reads.borrow().clone()
    }

    /// Forget the reads recorded so far.
    pub fn clear_reads(&self) {
        self.reads.borrow_mut().clear();
    }

    fn read(&self, what: &str) {
        self.reads.borrow_mut().push(what.to_owned());
    }

    fn read_header(&self, name: &str) {
        self.reads
            .borrow_mut()
            .push(format!("header {}", name.to_ascii_lowercase()));
    }

    /// The proxy's checks of an edit of header `name`, and the test's refusals.
    fn check_edit(&self, name: &str, value: &[u8]) -> Result<String, EditError> {
        if !text::is_header_name(name) {
            return Err(EditError::InvalidName);
        }
        let name = name.to_ascii_lowercase();
        if let Some((_, error)) = self.refusals.iter().find(|(n, _)| *n == name) {
            return Err(*error);
        }
        if text::is_managed_header(&name) {
            return Err(EditError::ReadOnly);
        }
        if !text::is_header_value(value) {
            return Err(EditError::InvalidValue);
        }
        Ok(name)
    }
}

impl Default for FakeRequest {
    /// `GET /`.
    fn default() -> Self {
        FakeRequest::get("/")
    }
}

impl RequestFacts for FakeRequest {
    fn method(&self) -> Cow<'_, str> {
        self.read("method");
        Cow::Borrowed(&self.method)
    }

    fn scheme(&self) -> Cow<'_, str> {
        self.read("scheme");
        Cow::Borrowed(&self.scheme)
    }

    fn path(&self) -> Cow<'_, str> {
        self.read("path");
        Cow::Owned(self.path.borrow().clone())
    }

    fn authority(&self) -> Option<Cow<'_, str>> {
        self.read("authority");
        self.authority.as_deref().map(Cow::Borrowed)
    }

    fn header_bytes(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.read_header(name);
        self.headers
            .borrow()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| Cow::Owned(value.clone()))
    }

    fn header_values(&self, name: &str) -> Vec<Vec<u8>> {
        self.read_header(name);
        self.headers
            .borrow()
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .collect()
    }

    fn client_address(&self) -> Option<Cow<'_, str>> {
        self.read("client_address");
        self.client_address.as_deref().map(Cow::Borrowed)
    }

    fn peer_identity(&self) -> Option<Cow<'_, str>> {
        self.read("peer_identity");
        self.peer_identity.as_deref().map(Cow::Borrowed)
    }

    fn route_name(&self) -> Option<Cow<'_, str>> {
        self.read("route_name");
        self.route_name.as_deref().map(Cow::Borrowed)
    }

    fn upstream(&self) -> Option<Cow<'_, str>> {
        self.read("upstream");
        self.upstream.borrow().clone().map(Cow::Owned)
    }

    fn listener_name(&self) -> Cow<'_, str> {
        self.read("listener_name");
        Cow::Borrowed(&self.listener_name)
    }

    fn direction(&self) -> Direction {
        self.read("direction");
        self.direction
    }
}

impl RequestEdits for FakeRequest {
    fn set_path(&self, path: &str) -> Result<(), EditError> {
        if !path.starts_with('/') {
            return Err(EditError::InvalidPath);
        }
        *self.path.borrow_mut() = path.to_owned();
        Ok(())
    }

    fn set_upstream(&self, name: &str) -> Result<(), EditError> {
        *self.upstream.borrow_mut() = Some(name.to_owned());
        Ok(())
    }

    fn set_header(&self, name: &str, value: &[u8]) -> Result<(), EditError> {
        let name = self.check_edit(name, value)?;
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value.to_vec()));
        Ok(())
    }

    fn append_header(&self, name: &str, value: &[u8]) -> Result<(), EditError> {
        let name = self.check_edit(name, value)?;
        self.headers.borrow_mut().push((name, value.to_vec()));
        Ok(())
    }

    fn remove_header(&self, name: &str) -> Result<(), EditError> {
        let name = self.check_edit(name, b"")?;
        self.headers.borrow_mut().retain(|(n, _)| *n != name);
        Ok(())
    }

    fn add_response_header(&self, name: &str, value: &[u8]) -> Result<(), EditError> {
        let name = self.check_edit(name, value)?;
        self.response_headers
            .borrow_mut()
            .push((name, value.to_vec()));
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// Generic code sees the same request through the trait, whatever implements it.
    fn summary(request: &impl RequestFacts) -> String {
        format!(
            "{} {}://{}{} from {:?} as {:?} via {:?} to {:?} on {} ({})",
            request.method(),
            request.scheme(),
            request.authority().unwrap_or_default(),
            request.path(),
            request.client_ip(),
            request.peer_identity(),
            request.route_name(),
            request.upstream(),
            request.listener_name(),
            request.direction(),
        )
    }

    #[test]
    fn facts_of_a_fake_request() {
        let request = FakeRequest::new("PUT", "/a?b=1")
            .with_scheme("https")
            .with_authority("example.com")
            .with_client_address("[2001:db8::1]:443")
            .with_peer_identity("spiffe://cluster.local/ns/a/sa/b")
            .with_route("r")
            .with_upstream("u")
            .with_listener("egress", Direction::Outbound);
        assert_eq!(
            summary(&request),
            "PUT https://example.com/a?b=1 from Some(2001:db8::1) as \
             Some(\"spiffe://cluster.local/ns/a/sa/b\") via Some(\"r\") to Some(\"u\") on egress \
             (outbound)"
        );
        assert!(matches!(request.method(), Cow::Borrowed("PUT")));
        let bare = FakeRequest::default();
        assert_eq!(
            summary(&bare),
            "GET http:/// from None as None via None to None on inbound (inbound)"
        );
        assert_eq!(bare.client_ip(), None);
        let broken = FakeRequest::default().with_client_address("nowhere");
        assert_eq!(broken.client_ip(), None);
    }

    #[test]
    fn headers_are_case_insensitive_and_ordered() {
        let request = FakeRequest::get("/")
            .with_header("X-A", "1")
            .with_header("x-b", b"\xff")
            .with_header("x-a", "2");
        assert_eq!(request.header_bytes("x-a").as_deref(), Some(&b"1"[..]));
        assert_eq!(request.header_values("X-a"), [b"1".to_vec(), b"2".to_vec()]);
        assert_eq!(request.header_bytes("x-b").as_deref(), Some(&b"\xff"[..]));
        assert_eq!(request.header_bytes("x-c"), None);
        assert!(request.header_values("x-c").is_empty());
        assert_eq!(
            request.reads(),
            [
                "header x-a",
                "header x-a",
                "header x-b",
                "header x-c",
                "header x-c"
            ]
        );
        request.clear_reads();
        assert!(request.reads().is_empty());
        assert_eq!(request.header_texts("X-B"), ["\u{fffd}"]);
    }

    #[test]
    fn edits_are_checked_like_the_proxy_does() {
        let request = FakeRequest::get("/")
            .with_header("x-env", "prod")
            .with_header("x-env", "prod2")
            .with_refusal("X-Refused", EditError::InvalidValue);
        request.set_header("X-Env", b"beta").unwrap();
        request.append_header("x-multi", b"a").unwrap();
        request.append_header("x-multi", b"b").unwrap();
        request.remove_header("x-absent").unwrap();
        request.add_response_header("x-choice", b"beta").unwrap();
        request.set_upstream("canary").unwrap();
        request.set_path("/v2").unwrap();
        assert_eq!(request.header_texts("x-env"), ["beta"]);
        assert_eq!(request.header_texts("x-multi"), ["a", "b"]);
        assert_eq!(
            request.response_headers(),
            [("x-choice".to_owned(), b"beta".to_vec())]
        );
        assert_eq!(request.upstream().as_deref(), Some("canary"));
        assert_eq!(request.path(), "/v2");

        assert_eq!(
            request.set_header("bad name", b"1"),
            Err(EditError::InvalidName)
        );
        assert_eq!(
            request.set_header("x-a", b"1\n2"),
            Err(EditError::InvalidValue)
        );
        assert_eq!(
            request.remove_header("Connection"),
            Err(EditError::ReadOnly)
        );
        assert_eq!(
            request.set_header("host", b"evil"),
            Err(EditError::ReadOnly)
        );
        assert_eq!(
            request.add_response_header("content-length", b"1"),
            Err(EditError::ReadOnly)
        );
        assert_eq!(
            request.add_response_header("x-refused", b"1"),
            Err(EditError::InvalidValue)
        );
        assert_eq!(request.set_path("v3"), Err(EditError::InvalidPath));
        assert_eq!(request.header_texts("x-a"), Vec::<String>::new());
        assert_eq!(request.path(), "/v2");
    }
}
