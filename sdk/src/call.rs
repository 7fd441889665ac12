//! Outbound calls: what [`Action::Call`](crate::Action::Call) sends, and what
//! [`Filter::on_call_response`](crate::Filter::on_call_response) receives.

use std::fmt;
use std::time::Duration;

use crate::bindings::weft::filter::http as raw;

/// An HTTP request a filter sends through the proxy, to an upstream of the proxy's
/// configuration or a discovered service, built like this:
///
/// ```
/// use std::time::Duration;
/// use weft_sdk::{Action, CallRequest};
///
/// let action = Action::Call(
///     CallRequest::get("authz", "/check")
///         .header("x-user", "7")
///         .timeout(Duration::from_millis(200)),
/// );
/// ```
///
/// It goes through the upstream's circuit breaker, load balancer, connection pool and mTLS,
/// like a proxied request. Hop-by-hop headers and `content-length` cannot be set: the call then
/// fails with [`CallError::InvalidRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRequest {
    /// The upstream or service name.
    pub upstream: String,
    /// The method.
    pub method: String,
    /// The path and query, starting with `/`.
    pub path: String,
    /// The headers to send.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body.
    pub body: Vec<u8>,
    /// How long to wait for the whole response; `None`: the proxy's default, one second. At
    /// most a minute.
    pub timeout: Option<Duration>,
    /// The largest response body accepted; `None`: the proxy's default, 64 KiB. At most 4 MiB.
    pub max_response_bytes: Option<u32>,
}

impl CallRequest {
    /// A request with `method` to `path` on `upstream`, without headers or body.
    pub fn new(method: &str, upstream: &str, path: &str) -> Self {
        Self {
            upstream: upstream.to_owned(),
            method: method.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_response_bytes: None,
        }
    }

    /// A `GET` of `path` on `upstream`.
    pub fn get(upstream: &str, path: &str) -> Self {
        Self::new("GET", upstream, path)
    }

    /// A `POST` to `path` on `upstream`.
    pub fn post(upstream: &str, path: &str) -> Self {
        Self::new("POST", upstream, path)
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    /// Set the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Set how long to wait for the whole response.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Set the largest response body accepted.
    pub fn max_response_bytes(mut self, limit: u32) -> Self {
        self.max_response_bytes = Some(limit);
        self
    }

    pub(crate) fn into_raw(self) -> raw::CallRequest {
        raw::CallRequest {
            upstream: self.upstream,
            method: self.method,
            path: self.path,
            headers: self.headers,
            body: self.body,
            // 0 asks for the default; a timeout under 1 ms is taken as 1 ms, and one over
            // `u32::MAX` ms is far over the maximum: the proxy refuses it.
            timeout_ms: self.timeout.map_or(0, |t| {
                u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1)
            }),
            max_response_bytes: self.max_response_bytes.map_or(0, |n| n.max(1)),
        }
    }
}

/// The answer to a call, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResponse {
    /// The status code.
    pub status: u16,
    /// The header fields, names in lower case, hop-by-hop fields removed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl CallResponse {
    /// The first value of header `name` (case-insensitive), decoded as UTF-8 lossily.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why a call has no response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallError {
    /// No upstream or discovered service has this name.
    UnknownUpstream(String),
    /// The request cannot be sent; the message says which field is wrong.
    InvalidRequest(String),
    /// No whole response within the call's timeout.
    Timeout,
    /// The response body is larger than the call's limit.
    ResponseTooLarge,
    /// The filter already has its maximum of calls in flight.
    TooManyCalls,
    /// The upstream could not be reached or failed; the message says how.
    Unavailable(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::UnknownUpstream(name) => write!(f, "no upstream or service named {name:?}"),
            CallError::InvalidRequest(m) => write!(f, "invalid call: {m}"),
            CallError::Timeout => f.write_str("no response within the call's timeout"),
            CallError::ResponseTooLarge => {
                f.write_str("the response body is over the call's limit")
            }
            CallError::TooManyCalls => f.write_str("the filter has its maximum of calls in flight"),
            CallError::Unavailable(m) => write!(f, "upstream unavailable: {m}"),
        }
    }
}

impl std::error::Error for CallError {}

pub(crate) fn from_raw(
    result: Result<raw::CallResponse, raw::CallError>,
) -> Result<CallResponse, CallError> {
    match result {
        Ok(r) => Ok(CallResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }),
        Err(e) => Err(match e {
            raw::CallError::UnknownUpstream(n) => CallError::UnknownUpstream(n),
            raw::CallError::InvalidRequest(m) => CallError::InvalidRequest(m),
            raw::CallError::Timeout => CallError::Timeout,
            raw::CallError::ResponseTooLarge => CallError::ResponseTooLarge,
            raw::CallError::TooManyCalls => CallError::TooManyCalls,
            raw::CallError::Unavailable(m) => CallError::Unavailable(m),
        }),
    }
}
