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

use crate::body::{self, ProxyBody};
use crate::build::RouteTable;
use crate::chain::{Leases, Outcome, Phase};
use crate::mesh::Peer;
use crate::normalize;
use crate::respond::{self, Refusal};
use crate::route::{self, ListenerState, Route};
use crate::upstream::{self, Upstream};

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
            let exchange = Exchange {
                listener,
                table: &table,
                route,
                leases: route.chain.leases(&head),
                info: RequestInfo {
                    client: Some(client),
                    listener: listener.name.clone(),
                    direction: listener.direction,
                    route: Some(route.name.clone()),
                    peer_identity: peer.map(|p| p.id.clone()),
                },
                directives: Directives {
                    upstream: Some(route.upstream.name.clone()),
                    response_headers: HeaderMap::new(),
                },
            };
            let response = exchange.run(head, incoming).await;
            (
                response,
                &route.metrics,
                &*route.name,
                &*route.upstream.name,
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
        response
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
            None => Ok(finish(
                rhead,
                upstream_body.map_err(Into::into).boxed_unsync(),
            )),
            Some(request) => {
                self.response_phases(&request, rhead, upstream_body, upstream)
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
        if chain.request_headers {
            let phase = Phase::RequestHeaders {
                head: &mut *head,
                directives: &mut self.directives,
            };
            Result::from(chain.run(&mut self.leases, &self.info, phase).await)?;
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
        Result::from(chain.run(&mut self.leases, &self.info, phase).await)?;
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(body::with_trailers(bytes, trailers))
    }

    /// Send the request to the upstream the route or a filter chose, within the route's
    /// timeout; the response head, hop-by-hop fields removed, and its body.
    async fn upstream(
        &mut self,
        head: RequestHead,
        body: ProxyBody,
    ) -> Result<(ResponseHead, Incoming, &'a Arc<Upstream>), Early> {
        let route: &'a Route = self.route;
        let table: &'a RouteTable = self.table;
        let upstream = match &self.directives.upstream {
            Some(name) if **name != *route.upstream.name => match table.upstreams.get(&**name) {
                Some(chosen) => chosen,
                None => return Err(Refusal::UnknownUpstream(name.clone()).into()),
            },
            _ => &route.upstream,
        };
        let timeout = route.timeout.unwrap_or(upstream.timeout);
        let request = upstream_request(head, body, &self.info, upstream)?;
        let downstream_version = request.version();
        let response =
            match tokio::time::timeout(timeout, upstream.send(request, downstream_version)).await {
                Err(_) => {
                    return Err(Refusal::UpstreamTimeout {
                        upstream: upstream.name.clone(),
                        timeout,
                    }
                    .into());
                }
                Ok(Err(e)) => {
                    return Err(upstream::refusal(&upstream.name, &e, &self.listener.limits).into());
                }
                Ok(Ok(r)) => r,
            };
        let (parts, upstream_body) = response.into_parts();
        let mut rhead = ResponseHead {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
        };
        hop::strip(&mut rhead.headers, false);
        Ok((rhead, upstream_body, upstream))
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
        if chain.response_headers {
            let phase = Phase::ResponseHeaders {
                request,
                head: &mut rhead,
            };
            Result::from(chain.run(&mut self.leases, &self.info, phase).await)?;
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
        Result::from(chain.run(&mut self.leases, &self.info, phase).await)?;
        rhead
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Ok(finish(rhead, body::with_trailers(bytes, trailers)))
    }
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
