//! One request's trip through the proxy, as named steps:
//!
//! 1. [`handle`]: normalize the head ([`crate::normalize`]), load the listener's routes once and
//!    [select](crate::route::select) the route;
//! 2. [`Exchange::request_phases`]: the chain's request hooks — headers, then the body when a
//!    filter wants it buffered;
//! 3. [`Exchange::upstream`]: the upstream the route (or a filter) chose, the request sent to
//!    it, the route's timeout;
//! 4. [`Exchange::response_phases`]: the chain's response hooks, in reverse chain order;
//! 5. back in [`handle`]: the headers filters added, the request metrics and the access log.
//!
//! A step that cannot go on returns [`Early`]: a filter's own response, or a [`Refusal`] that
//! [`crate::respond`] turns into the proxy's. Delays are awaited inside the chain, where a
//! filter asked for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use weft_runtime::{Directives, RequestHead, RequestInfo, ResponseHead, SentRequest, hop};

use crate::body::{self, ProxyBody, Replay};
use crate::build::RouteTable;
use crate::chain::{Leases, Outcome, Phase};
use crate::config::UpstreamRef;
use crate::discovery::Registry;
use crate::mesh::Peer;
use crate::metrics::{RetryReason, RetrySkipped};
use crate::normalize;
use crate::outbound::Outbound;
use crate::respond::{self, Refusal};
use crate::route::{self, Choice, ListenerState, Route, Target};
use crate::upstream::{self, Upstream};
use crate::upstream::{Admitted, Endpoint, TryFailure};
use weft_traffic::endpoint::Outcome as TryOutcome;

/// How an exchange ends before the upstream's response is forwarded.
enum Early {
    /// A filter answered (`respond`, or a delay's response).
    Filter(Response<Bytes>),
    /// The proxy answers itself.
    Refused(Refusal),
}

impl From<Refusal> for Early {
    fn from(refusal: Refusal) -> Self {
        Early::Refused(refusal)
    }
}

impl From<Outcome> for Result<(), Early> {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Continue => Ok(()),
            Outcome::Respond(response) => Err(Early::Filter(response)),
            Outcome::Failed(failure) => Err(Early::Refused(failure.into())),
        }
    }
}

impl Early {
    fn into_response(self) -> Response<ProxyBody> {
        match self {
            Early::Filter(response) => respond::from_filter(response),
            Early::Refused(refusal) => refusal.into_response(),
        }
    }
}

/// Serve one request from `client` on `listener`.
///
/// `peer` is the caller when the connection is mTLS.
pub(crate) async fn handle(
    listener: &ListenerState,
    client: SocketAddr,
    peer: Option<&Peer>,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let (parts, incoming) = request.into_parts();
    let mut head = RequestHead {
        method: parts.method,
        uri: parts.uri,
        version: parts.version,
        headers: parts.headers,
    };
    let access = tracing::enabled!(target: "weft::access", tracing::Level::INFO)
        .then(|| (head.method.clone(), head.uri.clone()));
    // The path and authority every later step sees; hop-by-hop fields go as received, before
    // a filter could add one that a client's `Connection` names.
    let refused = normalize::request_head(&mut head, &listener.paths).err();
    if let Some(name) = &listener.peer_identity_header {
        forward_peer_identity(&mut head.headers, name, peer.map(|p| &p.header));
    }
    // One atomic load: the request runs on this version of the routes and chains to the end,
    // whatever reloads happen meanwhile.
    let table = listener.table.load_full();
    let route = match refused {
        Some(_) => None,
        None => route::select(&table, &head),
    };
    let (response, metrics, route_name, upstream) = match (route, refused) {
        (_, Some(refused)) => (
            Refusal::from(refused).into_response(),
            &listener.unmatched,
            "none",
            "none",
        ),
        (Some(route), None) => {
            let (label, chosen) = choose(&route.target, &head, listener.services.as_deref());
            let exchange = Exchange {
                listener,
                table: &table,
                route,
                chosen: Some(chosen),
                admitted: None,
                leases: route.chain.leases(&head),
                info: RequestInfo {
                    client: Some(client),
                    listener: listener.name.clone(),
                    direction: listener.direction,
                    route: Some(route.name.clone()),
                    peer_identity: peer.map(|p| p.id.clone()),
                },
                directives: Directives {
                    upstream: label,
                    response_headers: HeaderMap::new(),
                },
            };
            let response = exchange.run(head, incoming).await;
            (
                response,
                &route.metrics,
                &*route.name,
                route.target.metrics_label(),
            )
        }
        (None, None) => (
            Refusal::NoRoute.into_response(),
            &listener.unmatched,
            "none",
            "none",
        ),
    };
    let elapsed = start.elapsed();
    metrics.record(response.status().as_u16(), elapsed);
    if let Some((method, uri)) = access {
        tracing::info!(
            target: "weft::access",
            listener = &*listener.name,
            client = %client,
            method = %method,
            path = %uri.path(),
            route = route_name,
            upstream,
            status = response.status().as_u16(),
            duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
    response
}

/// One routed request: what its steps share.
struct Exchange<'a> {
    listener: &'a ListenerState,
    /// The routes and upstreams this request runs on, loaded once.
    table: &'a RouteTable,
    route: &'a Route,
    /// The upstream the route chose when the request arrived (or why none), unless a filter
    /// names another.
    chosen: Option<Result<Resolved, Refusal>>,
    /// The request's slot under the upstream's `max_requests`, held with the response body.
    admitted: Option<Admitted>,
    /// The instances the request holds, and the filters it skips.
    leases: Leases,
    /// What filters may read but not change.
    info: RequestInfo,
    /// What request hooks asked for: the upstream, headers for the response.
    directives: Directives,
}

impl<'a> Exchange<'a> {
    /// Run the request through its steps; whatever the response, add the headers filters
    /// asked for.
    async fn run(mut self, head: RequestHead, incoming: Incoming) -> Response<ProxyBody> {
        let mut response = match self.steps(head, incoming).await {
            Ok(response) => response,
            Err(early) => early.into_response(),
        };
        append_all(
            response.headers_mut(),
            std::mem::take(&mut self.directives.response_headers),
        );
        match self.admitted.take() {
            None => response,
            Some(slot) => response.map(|b| body::holding(b, slot)),
        }
    }

    async fn steps(
        &mut self,
        mut head: RequestHead,
        incoming: Incoming,
    ) -> Result<Response<ProxyBody>, Early> {
        let body = self.request_phases(&mut head, incoming).await?;
        // Response hooks see the request as the request hooks left it.
        let chain = &self.route.chain;
        let sent = (chain.response_headers || chain.response_body).then(|| {
            Arc::new(SentRequest {
                head: head.clone(),
                upstream: self.directives.upstream.clone(),
            })
        });
        let (rhead, upstream_body, upstream) = self.upstream(head, body).await?;
        match sent {
            None => {
                // The request's circuit-breaker slot rides in the one box the body gets.
                let body = match self.admitted.take() {
                    Some(slot) => body::holding(upstream_body, slot),
                    None => upstream_body.map_err(Into::into).boxed_unsync(),
                };
                Ok(finish(rhead, body))
            }
            Some(request) => {
                self.response_phases(&request, rhead, upstream_body, &upstream)
                    .await
            }
        }
    }

    /// The request hooks, and the body to send upstream: the client's, streamed, or the one
    /// filters saw, buffered.
    async fn request_phases(
        &mut self,
        head: &mut RequestHead,
        incoming: Incoming,
    ) -> Result<ProxyBody, Early> {
        let chain = &self.route.chain;
        let limits = &self.listener.limits;
        let outbound = self.outbound();
        if chain.request_headers {
            let phase = Phase::RequestHeaders {
                head: &mut *head,
                directives: &mut self.directives,
            };
            Result::from(
                chain
                    .run(&mut self.leases, &self.info, &outbound, phase)
                    .await,
            )?;
        }

        let declared_len = head
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > limits.max_request_body_bytes) {
            return Err(Refusal::BodyTooLarge {
                limit: limits.max_request_body_bytes,
            }
            .into());
        }
        if !chain.request_body {
            return Ok(body::from_client(incoming, limits.max_request_body_bytes));
        }

        let limit = limits.max_buffered_body_bytes as u64;
        let collected = match body::Limited::new(incoming, limit).collect().await {
            Ok(c) => c,
            Err(e) if body::is_too_large(&*e) => {
                return Err(Refusal::BodyOverBuffer { limit }.into());
            }
            Err(e) => {
                return Err(Refusal::ClientBody {
                    detail: Some(e.to_string()),
                }
                .into());
            }
        };
        let trailers = collected.trailers().cloned();
        let mut bytes = collected.to_bytes();
        let phase = Phase::RequestBody {
            head: &mut *head,
            directives: &mut self.directives,
            body: &mut bytes,
        };
        Result::from(
            chain
                .run(&mut self.leases, &self.info, &outbound, phase)
                .await,
        )?;
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(body::with_trailers(bytes, trailers))
    }

    /// Where filters' calls go.
    fn outbound(&self) -> Outbound<'a> {
        Outbound {
            table: self.table,
            listener: self.listener,
        }
    }

    /// The upstream a filter named instead of the route's choice.
    fn resolve(&self, name: &Arc<str>) -> Result<Resolved, Refusal> {
        let reference = UpstreamRef::parse(name);
        let upstream = self
            .listener
            .upstream(self.table, &reference)
            .ok_or_else(|| Refusal::UnknownUpstream(name.clone()))?;
        Ok(Resolved {
            upstream,
            subset: reference.subset.map(Into::into),
            label: name.clone(),
        })
    }

    /// Send the request to the upstream the route or a filter chose: the endpoint its
    /// balancer picks, again on another one when a try fails in a way the retry policy
    /// covers, the budget allows and the body can be replayed; all within the request's
    /// timeout (to the response head). Returns the response head, hop-by-hop fields removed,
    /// and its body.
    async fn upstream(
        &mut self,
        head: RequestHead,
        body: ProxyBody,
    ) -> Result<(ResponseHead, Incoming, Arc<Upstream>), Early> {
        let chosen = self.chosen.take().unwrap_or(Err(Refusal::NoRoute));
        let Resolved {
            upstream, subset, ..
        } = match &self.directives.upstream {
            Some(name) if chosen.as_ref().is_ok_and(|c| c.label != *name) || chosen.is_err() => {
                self.resolve(name)?
            }
            _ => chosen?,
        };
        let route: &'a Route = self.route;
        let timeout = route.timeout.unwrap_or(upstream.timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        self.admitted = Some(upstream.admit()?);
        let retry = match &route.retries {
            Some((policy, budget)) => Some((policy, &**budget)),
            None => upstream
                .policy
                .retries
                .as_ref()
                .zip(upstream.budget.as_ref()),
        }
        .filter(|(policy, _)| policy.attempts > 0);
        let request = upstream_request(head, body, &self.info, &upstream)?;
        let h2 = upstream.uses_h2(request.version());
        let hash = upstream.hash(request.headers());
        let (mut parts, body) = request.into_parts();
        let limits = &self.listener.limits;

        // With retries, keep the body (when it is small enough) to send it again.
        let (mut once, replay) = match retry {
            None => (Some(body), None),
            Some((policy, budget)) => {
                budget.deposit();
                match body::keep_for_replay(body, policy.max_replay_body).await {
                    Ok(Replay::Once(body)) => (Some(body), None),
                    Ok(kept) => (None, Some(kept)),
                    Err(e) if body::is_too_large(&*e) => {
                        return Err(Refusal::BodyTooLarge {
                            limit: limits.max_request_body_bytes,
                        }
                        .into());
                    }
                    Err(e) => {
                        return Err(Refusal::ClientBody {
                            detail: Some(e.to_string()),
                        }
                        .into());
                    }
                }
            }
        };

        let mut retries = 0u32;
        let mut failed_on: Option<Arc<Endpoint>> = None;
        loop {
            let endpoint = upstream.pick(subset.as_deref(), hash, failed_on.as_ref())?;
            let body = match (once.take(), &replay) {
                (Some(body), _) => body,
                (None, Some(replay)) => replay.copy().unwrap_or_else(|| body::full(Bytes::new())),
                (None, None) => body::full(Bytes::new()),
            };
            // A try that cannot be followed by another takes the head; others send a copy.
            let last_try = retry.is_none_or(|(policy, _)| retries >= policy.attempts);
            let this_try = if last_try {
                std::mem::replace(&mut parts, Request::new(()).into_parts().0)
            } else {
                parts.clone()
            };
            let mut request = Request::from_parts(this_try, body);
            if let Some((policy, _)) = retry
                && policy.attempt_count_header
            {
                request.headers_mut().insert(
                    weft_traffic::policy::ATTEMPT_COUNT_HEADER,
                    http::HeaderValue::from(retries + 1),
                );
            }
            let per_try = retry.and_then(|(p, _)| p.per_try_timeout);
            let try_deadline = per_try.map_or(deadline, |t| {
                (tokio::time::Instant::now() + t).min(deadline)
            });
            let started = Instant::now();
            let outstanding = endpoint.state.start();
            let result =
                tokio::time::timeout_at(try_deadline, upstream.send(&endpoint, request, h2)).await;
            drop(outstanding);
            let latency = started.elapsed();

            // How the try went: for the endpoint's record, and whether to try again.
            let (outcome, reason) = match &result {
                Err(_) => (Some(TryOutcome::Gateway), Some(RetryReason::Timeout)),
                Ok(Err(e)) => match upstream::classify(e) {
                    TryFailure::Connect => {
                        (Some(TryOutcome::Gateway), Some(RetryReason::ConnectFailure))
                    }
                    TryFailure::Reset => (Some(TryOutcome::Gateway), Some(RetryReason::Reset)),
                    TryFailure::Overflow(..) | TryFailure::Client => (None, None),
                },
                Ok(Ok(response)) => {
                    let status = response.status().as_u16();
                    let outcome = if status >= 500 {
                        TryOutcome::ServerError
                    } else {
                        TryOutcome::Success
                    };
                    let reason = retry.and_then(|(p, _)| {
                        if p.on.status(status) {
                            Some(RetryReason::Status)
                        } else if grpc_status(response.headers())
                            .is_some_and(|c| p.on.grpc_status(c))
                        {
                            Some(RetryReason::Grpc)
                        } else {
                            None
                        }
                    });
                    (Some(outcome), reason)
                }
            };
            if let Some(outcome) = outcome {
                upstream.record(&endpoint, outcome, latency);
            }
            let retryable = match (retry, reason) {
                (Some((policy, _)), Some(reason)) => match reason {
                    RetryReason::ConnectFailure => policy.on.connect_failure,
                    RetryReason::Reset => policy.on.reset,
                    // A try's own timeout is retried; the request's is the end.
                    RetryReason::Timeout => per_try.is_some() && try_deadline < deadline,
                    RetryReason::Status | RetryReason::Grpc => true,
                },
                _ => false,
            };
            if let (true, Some((policy, budget))) = (retryable, retry)
                && retries < policy.attempts
            {
                let reason = reason.unwrap_or(RetryReason::Reset);
                if replay.is_none() {
                    upstream.metrics.skipped(RetrySkipped::Body);
                } else if !budget.withdraw() {
                    upstream.metrics.skipped(RetrySkipped::Budget);
                } else {
                    retries += 1;
                    let pause = weft_traffic::budget::backoff(policy, retries);
                    if tokio::time::Instant::now() + pause < deadline {
                        upstream.metrics.retried(reason);
                        tracing::debug!(upstream = &*upstream.name, endpoint = &*endpoint.address,
                            retry = retries, reason = ?reason, "retrying");
                        tokio::time::sleep(pause).await;
                        failed_on = Some(endpoint);
                        continue;
                    }
                }
            }
            let response = match result {
                Err(_) => {
                    return Err(Refusal::UpstreamTimeout {
                        upstream: upstream.name.clone(),
                        timeout: match per_try {
                            Some(t) if try_deadline < deadline => t,
                            _ => timeout,
                        },
                    }
                    .into());
                }
                Ok(Err(e)) => return Err(upstream::refusal(&upstream, &e, limits).into()),
                Ok(Ok(r)) => r,
            };
            let (parts, upstream_body) = response.into_parts();
            let mut rhead = ResponseHead {
                status: parts.status,
                version: parts.version,
                headers: parts.headers,
            };
            hop::strip(&mut rhead.headers, false);
            return Ok((rhead, upstream_body, upstream));
        }
    }

    /// The response hooks, over the response head and, when a filter wants it buffered, the
    /// whole body.
    async fn response_phases(
        &mut self,
        request: &Arc<SentRequest>,
        mut rhead: ResponseHead,
        upstream_body: Incoming,
        upstream: &Upstream,
    ) -> Result<Response<ProxyBody>, Early> {
        let chain = &self.route.chain;
        let outbound = self.outbound();
        if chain.response_headers {
            let phase = Phase::ResponseHeaders {
                request,
                head: &mut rhead,
            };
            Result::from(
                chain
                    .run(&mut self.leases, &self.info, &outbound, phase)
                    .await,
            )?;
        }
        if !chain.response_body {
            return Ok(finish(
                rhead,
                upstream_body.map_err(Into::into).boxed_unsync(),
            ));
        }
        let limit = self.listener.limits.max_buffered_body_bytes as u64;
        let collected = match body::Limited::new(upstream_body, limit).collect().await {
            Ok(c) => c,
            Err(e) if body::is_too_large(&*e) => {
                return Err(Refusal::UpstreamBodyOverBuffer {
                    upstream: upstream.name.clone(),
                    limit,
                }
                .into());
            }
            Err(e) => {
                return Err(Refusal::UpstreamBody {
                    upstream: upstream.name.clone(),
                    detail: e.to_string(),
                }
                .into());
            }
        };
        let trailers = collected.trailers().cloned();
        let mut bytes = collected.to_bytes();
        let phase = Phase::ResponseBody {
            request,
            head: &mut rhead,
            body: &mut bytes,
        };
        Result::from(
            chain
                .run(&mut self.leases, &self.info, &outbound, phase)
                .await,
        )?;
        rhead
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(finish(rhead, body::with_trailers(bytes, trailers)))
    }
}

/// The upstream a request goes to, and how filters see it.
#[derive(Debug)]
struct Resolved {
    upstream: Arc<Upstream>,
    subset: Option<Arc<str>>,
    label: Arc<str>,
}

/// Where the route sends this request: its upstream, a pick of its split, or the service its
/// authority names. The label is what filters see as the upstream; a failure is kept for
/// the upstream step, so that filters run first (and may choose another upstream).
fn choose(
    target: &Target,
    head: &RequestHead,
    services: Option<&Registry>,
) -> (Option<Arc<str>>, Result<Resolved, Refusal>) {
    let of_choice = |choice: &Choice| {
        let upstream = match &choice.upstream {
            Some(upstream) => Some(upstream.clone()),
            None => services.and_then(|s| s.by_name(&choice.reference)),
        };
        let resolved = upstream
            .map(|upstream| Resolved {
                upstream,
                subset: choice.reference.subset.as_deref().map(Into::into),
                label: choice.label.clone(),
            })
            .ok_or_else(|| Refusal::UnknownUpstream(choice.label.clone()));
        (Some(choice.label.clone()), resolved)
    };
    match target {
        Target::One(choice) => of_choice(choice),
        Target::Split {
            choices,
            cumulative,
        } => {
            let total = cumulative.last().copied().unwrap_or(1).max(1);
            let r = u32::try_from(getrandom::u64().unwrap_or(0) % u64::from(total)).unwrap_or(0);
            let i = cumulative
                .partition_point(|c| *c <= r)
                .min(choices.len() - 1);
            of_choice(&choices[i])
        }
        Target::ByAuthority => {
            let resolved = match (services, head.authority()) {
                (Some(services), Some(authority)) => services.by_authority(authority),
                (None, _) => Err(Refusal::UnknownService {
                    authority: head.authority().unwrap_or_default().to_owned(),
                    detail: "this proxy has no control plane to discover services from".to_owned(),
                }),
                (Some(_), None) => Err(Refusal::UnknownService {
                    authority: String::new(),
                    detail: "the request has no authority (Host) to route by".to_owned(),
                }),
            };
            match resolved {
                Ok(upstream) => (
                    Some(upstream.name.clone()),
                    Ok(Resolved {
                        label: upstream.name.clone(),
                        upstream,
                        subset: None,
                    }),
                ),
                Err(refusal) => (None, Err(refusal)),
            }
        }
    }
}

/// A trailers-only gRPC response's status code.
fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// Append every value of `from` to `to`, keeping what `to` has (`HeaderMap::extend` would
/// replace same-named headers).
fn append_all(to: &mut HeaderMap, from: HeaderMap) {
    if from.is_empty() {
        return;
    }
    if to.is_empty() {
        *to = from;
        return;
    }
    let mut name = None;
    for (next, value) in from {
        // `HeaderMap::into_iter` names each header once, before its first value.
        if next.is_some() {
            name = next;
        }
        if let Some(name) = &name {
            to.append(name.clone(), value);
        }
    }
}

fn finish(head: ResponseHead, body: ProxyBody) -> Response<ProxyBody> {
    let mut response = Response::new(body);
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
}

/// Turn the filtered request head into the request sent upstream.
fn upstream_request(
    mut head: RequestHead,
    body: ProxyBody,
    info: &RequestInfo,
    upstream: &Upstream,
) -> Result<Request<ProxyBody>, Refusal> {
    // Hop-by-hop fields were removed as the request arrived, and filters cannot add any.
    if let Some(client) = info.client {
        let ip = client.ip().to_string();
        let value = match head
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip,
        };
        if let Ok(v) = HeaderValue::try_from(value) {
            head.headers.insert("x-forwarded-for", v);
        }
    }
    if !head.headers.contains_key("x-forwarded-proto") {
        head.headers
            .insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    // The request keeps its authority (Host / :authority); the connector decides where to go.
    let authority = head
        .authority()
        .map(str::to_owned)
        .unwrap_or_else(|| upstream.name.to_string());
    let uri = Uri::builder()
        .scheme("http")
        .authority(authority.as_str())
        .path_and_query(head.path_and_query())
        .build()
        .map_err(|_| Refusal::InvalidAuthority(authority))?;
    let mut request = Request::new(body);
    *request.method_mut() = head.method;
    *request.uri_mut() = uri;
    *request.version_mut() = head.version;
    *request.headers_mut() = head.headers;
    Ok(request)
}

/// The caller's identity in header `name`, for the upstream and the filters: whatever the
/// client sent under that name is removed first, so the header is the proxy's word alone.
fn forward_peer_identity(
    headers: &mut HeaderMap,
    name: &header::HeaderName,
    peer: Option<&HeaderValue>,
) {
    headers.remove(name);
    if let Some(value) = peer {
        headers.insert(name.clone(), value.clone());
    }
}
