//! Outbound calls: what a filter asks the proxy to send with the `call` action, and what comes
//! back to its `on-call-response`. The runtime only checks and converts; the embedder sends
//! the request (the proxy through its upstream pools, the harness to its fake upstreams).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode};

use crate::bindings::weft::filter::http as wit;

/// A call's timeout when the filter gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The longest timeout a call may have.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// A call's response body limit when the filter gives none.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The largest response body limit a call may have.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Calls one filter may make for one request (a `call` from `on-call-response` counts too).
pub const MAX_CALLS_PER_REQUEST: u32 = 8;
/// The largest request body a call may send.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// A checked outbound request.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The upstream or discovered service to send it to, as the filter named it.
    pub upstream: Arc<str>,
    /// The method.
    pub method: Method,
    /// The path and query.
    pub path: PathAndQuery,
    /// The headers (no hop-by-hop fields, no `content-length`).
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// How long to wait for the whole response.
    pub timeout: Duration,
    /// The largest response body accepted.
    pub max_response_bytes: usize,
}

/// The answer to a call.
#[derive(Debug, Clone)]
pub struct CallResponse {
    /// The status.
    pub status: StatusCode,
    /// The header fields, hop-by-hop fields removed.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Why a call has no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No upstream or discovered service has this name.
    #[error("no upstream or service is named {0:?}")]
    UnknownUpstream(String),
    /// The request cannot be sent.
    #[error("invalid call: {0}")]
    InvalidRequest(String),
    /// No whole response within the call's timeout.
    #[error("no response within the call's timeout")]
    Timeout,
    /// The response body is larger than the call allows.
    #[error("the response body is larger than the call's max-response-bytes")]
    ResponseTooLarge,
    /// The filter has its maximum of calls in flight.
    #[error("the filter has its maximum of calls in flight")]
    TooManyCalls,
    /// The upstream could not be reached or failed.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
}

/// The metric labels of the kinds of [`CallError`], in declaration order.
pub(crate) const ERROR_LABELS: [&str; 6] = [
    "unknown_upstream",
    "invalid_request",
    "timeout",
    "response_too_large",
    "too_many_calls",
    "unavailable",
];

impl CallError {
    /// 1 + the kind's place in [`ERROR_LABELS`]: its counter, after the one for `ok`.
    pub(crate) fn index(&self) -> usize {
        1 + match self {
            CallError::UnknownUpstream(_) => 0,
            CallError::InvalidRequest(_) => 1,
            CallError::Timeout => 2,
            CallError::ResponseTooLarge => 3,
            CallError::TooManyCalls => 4,
            CallError::Unavailable(_) => 5,
        }
    }

    /// The metric label.
    pub fn as_str(&self) -> &'static str {
        ERROR_LABELS[self.index() - 1]
    }
}

/// Check a guest's call request.
pub(crate) fn check(call: wit::CallRequest) -> Result<CallRequest, CallError> {
    let invalid = CallError::InvalidRequest;
    if call.upstream.is_empty() {
        return Err(invalid("upstream is empty".into()));
    }
    let method = Method::from_bytes(call.method.as_bytes())
        .map_err(|_| invalid(format!("method {:?} is not a valid method", call.method)))?;
    if !call.path.starts_with('/') {
        return Err(invalid(format!(
            "path {:?} must start with `/` (origin-form)",
            call.path
        )));
    }
    let path = PathAndQuery::try_from(call.path.as_str()).map_err(|_| {
        invalid(format!(
            "path {:?} is not a valid path and query",
            call.path
        ))
    })?;
    let timeout = match call.timeout_ms {
        0 => DEFAULT_TIMEOUT,
        ms => Duration::from_millis(u64::from(ms)),
    };
    if timeout > MAX_TIMEOUT {
        return Err(invalid(format!(
            "timeout-ms {} is over the maximum of {}",
            call.timeout_ms,
            MAX_TIMEOUT.as_millis()
        )));
    }
    let max_response_bytes = match call.max_response_bytes as usize {
        0 => DEFAULT_MAX_RESPONSE_BYTES,
        n if n > MAX_RESPONSE_BYTES => {
            return Err(invalid(format!(
                "max-response-bytes {n} is over the maximum of {MAX_RESPONSE_BYTES}"
            )));
        }
        n => n,
    };
    if call.body.len() > MAX_REQUEST_BYTES {
        return Err(invalid(format!(
            "the body is {} bytes, over the maximum of {MAX_REQUEST_BYTES}",
            call.body.len()
        )));
    }
    let mut headers = HeaderMap::with_capacity(call.headers.len());
    for (name, value) in call.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("header name {name:?} is not valid")))?;
        if crate::hop::is_hop_by_hop(&header) || header == http::header::CONTENT_LENGTH {
            return Err(invalid(format!(
                "header {name:?} is managed by the proxy and cannot be set"
            )));
        }
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| invalid(format!("header {name:?} has an invalid value")))?;
        headers.append(header, value);
    }
    Ok(CallRequest {
        upstream: call.upstream.into(),
        method,
        path,
        headers,
        body: Bytes::from(call.body),
        timeout,
        max_response_bytes,
    })
}

/// A call's result as the guest receives it.
pub(crate) fn to_wit(
    result: Result<CallResponse, CallError>,
) -> Result<wit::CallResponse, wit::CallError> {
    match result {
        Ok(response) => Ok(wit::CallResponse {
            status: response.status.as_u16(),
            headers: response
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            body: response.body.to_vec(),
        }),
        Err(e) => Err(match e {
            CallError::UnknownUpstream(name) => wit::CallError::UnknownUpstream(name),
            CallError::InvalidRequest(m) => wit::CallError::InvalidRequest(m),
            CallError::Timeout => wit::CallError::Timeout,
            CallError::ResponseTooLarge => wit::CallError::ResponseTooLarge,
            CallError::TooManyCalls => wit::CallError::TooManyCalls,
            CallError::Unavailable(m) => wit::CallError::Unavailable(m),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> wit::CallRequest {
        wit::CallRequest {
            upstream: "authz".into(),
            method: "POST".into(),
            path: "/check?x=1".into(),
            headers: vec![("x-user".into(), b"7".to_vec())],
            body: b"{}".to_vec(),
            timeout_ms: 0,
            max_response_bytes: 0,
        }
    }

    #[test]
    fn defaults_fill_zero_fields() {
        let c = check(call()).expect("valid");
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(c.path.as_str(), "/check?x=1");
        assert_eq!(c.headers["x-user"], "7");
    }

    /// An edit of a valid call, and the text its error must name.
    type Case = (fn(&mut wit::CallRequest), &'static str);

    #[test]
    fn each_bad_field_is_named() {
        let cases: [Case; 7] = [
            (|c| c.upstream.clear(), "upstream"),
            (|c| c.method = "GE T".into(), "method"),
            (|c| c.path = "check".into(), "path"),
            (|c| c.timeout_ms = 60_001, "timeout-ms"),
            (|c| c.max_response_bytes = 5 << 20, "max-response-bytes"),
            (
                |c| c.headers.push(("connection".into(), b"close".to_vec())),
                "\"connection\"",
            ),
            (
                |c| c.headers.push(("x-bad".into(), b"a\r\nb".to_vec())),
                "\"x-bad\"",
            ),
        ];
        for (edit, named) in cases {
            let mut c = call();
            edit(&mut c);
            match check(c) {
                Err(CallError::InvalidRequest(m)) => assert!(m.contains(named), "{m}"),
                other => panic!("expected invalid-request naming {named}, got {other:?}"),
            }
        }
    }
}
