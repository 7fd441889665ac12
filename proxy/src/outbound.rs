//! Filters' outbound calls (the `call` action): sent like proxied requests, through the named
//! upstream's circuit breaker, balancer, connection pools and mTLS, and read whole within the
//! call's timeout and size limit.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Uri};
use http_body_util::BodyExt;
use weft_runtime::{CallError, CallRequest, CallResponse, LoadedFilter, hop};

use crate::body;
use crate::build::RouteTable;
use crate::config::UpstreamRef;
use crate::route::ListenerState;
use crate::upstream::{self, TryFailure};
use weft_traffic::endpoint::Outcome as TryOutcome;

/// Where a request's filters send their calls: the upstreams of the routes the request runs
/// on, and the listener's discovered services.
pub(crate) struct Outbound<'a> {
    pub(crate) table: &'a RouteTable,
    pub(crate) listener: &'a ListenerState,
}

impl Outbound<'_> {
    /// Send `filter`'s call and read its whole response; count it and log a failure.
    pub(crate) async fn call(
        &self,
        filter: &LoadedFilter,
        call: Result<CallRequest, CallError>,
    ) -> Result<CallResponse, CallError> {
        let (upstream, result): (Arc<str>, _) = match call {
            // Refused before it had a destination.
            Err(e) => ("(not sent)".into(), Err(e)),
            Ok(call) => {
                let upstream = call.upstream.clone();
                let result = match filter.hold_call() {
                    None => Err(CallError::TooManyCalls),
                    Some(_in_flight) => self.send(call).await,
                };
                (upstream, result)
            }
        };
        filter.record_call(&upstream, &result);
        result
    }

    async fn send(&self, call: CallRequest) -> Result<CallResponse, CallError> {
        let reference = UpstreamRef::parse(&call.upstream);
        let upstream = self
            .listener
            .upstream(self.table, &reference)
            .ok_or_else(|| CallError::UnknownUpstream(call.upstream.to_string()))?;
        let unavailable = |r: crate::respond::Refusal| CallError::Unavailable(r.message());
        let _admitted = upstream.admit().map_err(unavailable)?;
        let hash = upstream.hash(&call.headers);
        let endpoint = upstream
            .pick(reference.subset.as_deref(), hash, None)
            .map_err(unavailable)?;
        let uri = Uri::builder()
            .scheme("http")
            .authority(&*upstream.name)
            .path_and_query(call.path)
            .build()
            .map_err(|e| CallError::InvalidRequest(format!("upstream name as authority: {e}")))?;
        let mut request = Request::new(body::full(call.body));
        *request.method_mut() = call.method;
        *request.uri_mut() = uri;
        *request.headers_mut() = call.headers;
        let h2 = upstream.uses_h2(http::Version::HTTP_11);
        let limit = call.max_response_bytes as u64;
        let started = Instant::now();
        let outstanding = endpoint.state.start();
        let exchange = async {
            let response = upstream.send(&endpoint, request, h2).await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    let (outcome, what) = match upstream::classify(&e) {
                        TryFailure::Connect => (Some(TryOutcome::Gateway), "cannot connect"),
                        TryFailure::Reset => (Some(TryOutcome::Gateway), "connection reset"),
                        TryFailure::Overflow(..) => (None, "over a connection limit"),
                        TryFailure::Client => (None, "request failed"),
                    };
                    return Err((
                        outcome,
                        CallError::Unavailable(format!("{}: {what}", upstream.name)),
                    ));
                }
            };
            let (mut parts, incoming) = response.into_parts();
            let declared = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit) {
                return Err((None, CallError::ResponseTooLarge));
            }
            let body = match body::Limited::new(incoming, limit).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) if body::is_too_large(&*e) => {
                    return Err((None, CallError::ResponseTooLarge));
                }
                Err(e) => {
                    return Err((
                        Some(TryOutcome::Gateway),
                        CallError::Unavailable(format!(
                            "{}: the response body broke off: {e}",
                            upstream.name
                        )),
                    ));
                }
            };
            hop::strip(&mut parts.headers, false);
            Ok((parts, body))
        };
        let result = tokio::time::timeout(call.timeout, exchange).await;
        drop(outstanding);
        let latency = started.elapsed();
        let (outcome, result) = match result {
            Err(_) => (Some(TryOutcome::Gateway), Err(CallError::Timeout)),
            Ok(Err((outcome, e))) => (outcome, Err(e)),
            Ok(Ok((parts, body))) => {
                let outcome = if parts.status.is_server_error() {
                    TryOutcome::ServerError
                } else {
                    TryOutcome::Success
                };
                (
                    Some(outcome),
                    Ok(CallResponse {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    }),
                )
            }
        };
        if let Some(outcome) = outcome {
            upstream.record(&endpoint, outcome, latency);
        }
        result
    }
}
