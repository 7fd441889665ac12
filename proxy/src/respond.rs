//! Every response the proxy writes itself, and who caused it.
//!
//! A step of the request path that cannot go on returns a [`Refusal`]; this module is the one
//! place that turns one into a status code and a `weft:` text body. The body names what went
//! wrong in terms the client can act on (which limit, which upstream, which filter), never the
//! internal detail, which goes to the log and the metrics.
//!
//! (hyper answers malformed HTTP itself, before a request reaches the proxy: 400 for a
//! malformed head, 431 for one over `max_request_header_bytes`.)

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use weft_runtime::FilterFailure;

use crate::body::{self, ProxyBody};
use crate::normalize::HeadError;

/// Who caused a response the proxy wrote itself (as pingora's `ErrorSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The client: a request the proxy will not or cannot take.
    Downstream,
    /// The upstream: it could not be reached, timed out or answered badly.
    Upstream,
    /// A filter: it failed, was unavailable, or asked for something that does not exist.
    Filter,
}

impl Source {
    /// The name in logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Downstream => "downstream",
            Source::Upstream => "upstream",
            Source::Filter => "filter",
        }
    }
}

/// Why the proxy answers a request itself instead of forwarding it or its response.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The request's path or authority is refused (see [`crate::normalize`]).
    Malformed(HeadError),
    /// No route of the listener takes the request.
    NoRoute,
    /// The request body is (or declares to be) over `max_request_body_bytes`.
    BodyTooLarge { limit: u64 },
    /// A filter wants the request body buffered, and it is over `max_buffered_body_bytes`.
    BodyOverBuffer { limit: u64 },
    /// The client's request body broke off or was malformed; the detail is known when the
    /// proxy read the body itself (for a filter).
    ClientBody { detail: Option<String> },
    /// The authority of the request cannot be put in the upstream request's URI.
    InvalidAuthority(String),
    /// A fail-closed filter failed, or could not be called (breaker open, overloaded).
    FilterFailed(FilterFailure),
    /// A filter chose an upstream that is not configured.
    UnknownUpstream(Arc<str>),
    /// The upstream did not send a response head within the route's timeout.
    UpstreamTimeout {
        upstream: Arc<str>,
        timeout: Duration,
    },
    /// No connection to the upstream could be made.
    UpstreamConnect { upstream: Arc<str> },
    /// The upstream's response was invalid or broke off before its head was complete.
    UpstreamFailed { upstream: Arc<str> },
    /// A filter wants the response body buffered, and it is over `max_buffered_body_bytes`.
    UpstreamBodyOverBuffer { upstream: Arc<str>, limit: u64 },
    /// The upstream's response body broke off while the proxy buffered it for a filter.
    UpstreamBody { upstream: Arc<str>, detail: String },
    /// Over one of the upstream's circuit-breaker limits.
    Overflow {
        upstream: Arc<str>,
        limit: &'static str,
        value: u32,
    },
    /// A route or filter named a subset the upstream does not define.
    UnknownSubset {
        upstream: Arc<str>,
        subset: Arc<str>,
    },
    /// The upstream (or the subset) has no endpoints now.
    NoEndpoints {
        upstream: Arc<str>,
        subset: Option<Arc<str>>,
    },
    /// The request's authority names no discovered service (or no port of it).
    UnknownService { authority: String, detail: String },
}

impl Refusal {
    /// Who caused it.
    pub(crate) fn source(&self) -> Source {
        match self {
            Refusal::Malformed(_)
            | Refusal::NoRoute
            | Refusal::BodyTooLarge { .. }
            | Refusal::BodyOverBuffer { .. }
            | Refusal::ClientBody { .. }
            | Refusal::InvalidAuthority(_) => Source::Downstream,
            Refusal::FilterFailed(_) | Refusal::UnknownUpstream(_) => Source::Filter,
            Refusal::UnknownService { .. } => Source::Downstream,
            Refusal::Overflow { .. }
            | Refusal::UnknownSubset { .. }
            | Refusal::NoEndpoints { .. } => Source::Upstream,
            Refusal::UpstreamTimeout { .. }
            | Refusal::UpstreamConnect { .. }
            | Refusal::UpstreamFailed { .. }
            | Refusal::UpstreamBodyOverBuffer { .. }
            | Refusal::UpstreamBody { .. } => Source::Upstream,
        }
    }

    /// The status the client gets.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) | Refusal::ClientBody { .. } | Refusal::InvalidAuthority(_) => {
                StatusCode::BAD_REQUEST
            }
            Refusal::NoRoute => StatusCode::NOT_FOUND,
            Refusal::BodyTooLarge { .. } | Refusal::BodyOverBuffer { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            // Retrying later may help: the filter's breaker closes, its load drops.
            Refusal::FilterFailed(f) if f.kind.is_short_circuit() => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::FilterFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::UnknownUpstream(_)
            | Refusal::UpstreamConnect { .. }
            | Refusal::Overflow { .. }
            | Refusal::UnknownSubset { .. }
            | Refusal::NoEndpoints { .. }
            | Refusal::UnknownService { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Refusal::UpstreamFailed { .. }
            | Refusal::UpstreamBodyOverBuffer { .. }
            | Refusal::UpstreamBody { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The body's text, without the `weft: ` prefix.
    pub(crate) fn message(&self) -> String {
        match self {
            Refusal::Malformed(refused) => refused.to_string(),
            Refusal::NoRoute => "no route matched".to_owned(),
            Refusal::BodyTooLarge { limit } => {
                format!("request body exceeds the limit of {limit} bytes")
            }
            Refusal::BodyOverBuffer { limit } => {
                format!("request body exceeds the {limit} bytes a filter may buffer")
            }
            Refusal::ClientBody { detail: None } => "could not read the request body".to_owned(),
            Refusal::ClientBody {
                detail: Some(detail),
            } => format!("could not read the request body: {detail}"),
            Refusal::InvalidAuthority(authority) => {
                format!("invalid request authority {authority:?}")
            }
            // The client learns which filter failed, not why: the detail is in the log and
            // the metrics.
            Refusal::FilterFailed(f) if f.kind.is_short_circuit() => {
                format!("filter \"{}\" is unavailable", f.filter)
            }
            Refusal::FilterFailed(f) => format!("filter \"{}\" failed", f.filter),
            Refusal::UnknownUpstream(name) => {
                format!("a filter chose upstream {name:?}, which is not configured")
            }
            Refusal::UpstreamTimeout { upstream, timeout } => format!(
                "upstream \"{upstream}\" timed out after {}",
                humantime::format_duration(*timeout)
            ),
            Refusal::UpstreamConnect { upstream } => {
                format!("upstream \"{upstream}\" unavailable: connection failed")
            }
            Refusal::UpstreamFailed { upstream } => {
                format!("upstream \"{upstream}\" failed: invalid or interrupted response")
            }
            Refusal::UpstreamBodyOverBuffer { upstream, limit } => format!(
                "response body from upstream \"{upstream}\" exceeds the {limit} bytes a filter may buffer"
            ),
            Refusal::UpstreamBody { upstream, detail } => {
                format!("upstream \"{upstream}\" failed while sending its body: {detail}")
            }
            Refusal::Overflow {
                upstream,
                limit,
                value,
            } => format!(
                "upstream \"{upstream}\" is over its circuit breaker's {limit} limit ({value})"
            ),
            Refusal::UnknownSubset { upstream, subset } => {
                format!("upstream \"{upstream}\" has no subset \"{subset}\"")
            }
            Refusal::NoEndpoints {
                upstream,
                subset: None,
            } => format!("upstream \"{upstream}\" has no endpoints"),
            Refusal::NoEndpoints {
                upstream,
                subset: Some(subset),
            } => format!("subset \"{subset}\" of upstream \"{upstream}\" has no endpoints"),
            Refusal::UnknownService { authority, detail } => {
                format!("no service for authority {authority:?}: {detail}")
            }
        }
    }

    /// The response the client gets. Logged at debug level (target `weft::respond`) with who
    /// caused it; failures worth an operator's attention are logged where they happen.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let message = self.message();
        tracing::debug!(
            target: "weft::respond",
            caused_by = self.source().as_str(),
            status = status.as_u16(),
            "{message}"
        );
        text(status, format!("weft: {message}\n"))
    }
}

impl From<HeadError> for Refusal {
    fn from(refused: HeadError) -> Self {
        Refusal::Malformed(refused)
    }
}

impl From<FilterFailure> for Refusal {
    fn from(failure: FilterFailure) -> Self {
        Refusal::FilterFailed(failure)
    }
}

/// A response a filter wrote (`respond` from a hook).
pub(crate) fn from_filter(response: Response<Bytes>) -> Response<ProxyBody> {
    response.map(body::full)
}

/// A plain-text response.
fn text(status: StatusCode, message: String) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(message));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_runtime::{FailureKind, Hook};

    #[test]
    fn every_refusal_has_a_status_and_a_source() {
        let failure = |kind| FilterFailure {
            filter: "authz".into(),
            hook: Hook::RequestHeaders,
            kind,
            message: "boom".into(),
        };
        let cases = [
            (
                Refusal::NoRoute,
                404,
                Source::Downstream,
                "weft: no route matched\n",
            ),
            (
                Refusal::FilterFailed(failure(FailureKind::Trap)),
                500,
                Source::Filter,
                "weft: filter \"authz\" failed\n",
            ),
            (
                Refusal::FilterFailed(failure(FailureKind::BreakerOpen)),
                503,
                Source::Filter,
                "weft: filter \"authz\" is unavailable\n",
            ),
            (
                Refusal::UpstreamTimeout {
                    upstream: "app".into(),
                    timeout: Duration::from_millis(1500),
                },
                504,
                Source::Upstream,
                "weft: upstream \"app\" timed out after 1s 500ms\n",
            ),
        ];
        for (refusal, status, source, text) in cases {
            assert_eq!(refusal.source(), source, "{refusal:?}");
            let response = refusal.into_response();
            assert_eq!(response.status().as_u16(), status);
            let body = runtime_body(response);
            assert_eq!(body, text);
        }
    }

    fn runtime_body(response: Response<ProxyBody>) -> String {
        use http_body_util::BodyExt;
        let collected = weft_runtime::block_on(response.into_body().collect());
        String::from_utf8_lossy(&collected.expect("a full body").to_bytes()).into_owned()
    }
}
