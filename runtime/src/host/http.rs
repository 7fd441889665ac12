//! `weft:filter/http`: the guest's view of the request, the response and buffered bodies.
//!
//! Handles passed to hooks are borrows the host mints with a fixed rep: the data itself sits
//! in [`CallState`](super::CallState) for the duration of one call, so no per-call resource
//! table traffic is needed and a handle can never reach another request's data.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, StatusCode, Uri, Version};
use wasmtime::component::Resource;

use super::{HostState, RequestRef};
use crate::bindings::weft::filter::http::{
    Direction, EditError, Headers, Host, HostBody, HostRequest, HostResponse,
};
use crate::policy::Direction as ListenerDirection;

/// Marker for the `request` resource; the data lives in [`CallState`](super::CallState).
#[allow(unreachable_pub)] // `bindgen!` re-exports it with `pub use`.
pub enum RequestSlot {}
/// Marker for the `response` resource.
#[allow(unreachable_pub)] // `bindgen!` re-exports it with `pub use`.
pub enum ResponseSlot {}
/// Marker for the `body` resource.
#[allow(unreachable_pub)] // `bindgen!` re-exports it with `pub use`.
pub enum BodySlot {}

/// The head of a request as the proxy holds it between hooks.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request target: origin-form for HTTP/1.1, absolute for HTTP/2.
    pub uri: Uri,
    /// The downstream HTTP version.
    pub version: Version,
    /// The header fields.
    pub headers: HeaderMap,
}

/// What request hooks asked of the proxy besides edits to the request itself. The embedder
/// owns it for the whole request and lends it to each request hook.
#[derive(Debug, Clone, Default)]
pub struct Directives {
    /// The upstream the request goes to: the route's, until a filter chooses another
    /// (`set-upstream`).
    pub upstream: Option<Arc<str>>,
    /// Headers to add to whatever response the request gets (`add-response-header`).
    pub response_headers: HeaderMap,
}

/// The request as it went upstream, which response hooks read: its head after the request
/// hooks, and the upstream it was sent to.
#[derive(Debug, Clone, Default)]
pub struct SentRequest {
    /// The head after the request hooks.
    pub head: RequestHead,
    /// The upstream it was sent to.
    pub upstream: Option<Arc<str>>,
}

impl RequestHead {
    /// The path and query, `/` when the target has none.
    pub fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", PathAndQuery::as_str)
    }

    /// The authority: the URI's (HTTP/2) or the `Host` header's (HTTP/1.1).
    pub fn authority(&self) -> Option<&str> {
        self.uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| self.headers.get(header::HOST)?.to_str().ok())
    }
}

/// The head of a response.
#[derive(Debug, Clone, Default)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// The upstream HTTP version.
    pub version: Version,
    /// The header fields.
    pub headers: HeaderMap,
}

/// Facts about a request that filters can read but not change.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The downstream peer.
    pub client: Option<SocketAddr>,
    /// The listener that accepted it.
    pub listener: Arc<str>,
    /// That listener's direction.
    pub direction: ListenerDirection,
    /// The route it matched.
    pub route: Option<Arc<str>>,
    /// The caller's SPIFFE ID when it came over mTLS; none for plaintext.
    pub peer_identity: Option<Arc<str>>,
}

/// The most bytes of state a filter may attach to a request.
pub(crate) const MAX_REQUEST_STATE: usize = 64 * 1024;

fn parse_name(name: &str) -> Result<HeaderName, EditError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| EditError::InvalidName)
}

/// A header a filter may set or remove: not one the proxy manages itself (hop-by-hop fields,
/// `host`), which filters may only read.
fn editable_name(name: &str) -> Result<HeaderName, EditError> {
    let name = parse_name(name)?;
    // `host` is the request's authority, decided once when it arrived: a filter changing it
    // would send the upstream somewhere the route and the other filters never saw.
    if crate::hop::is_hop_by_hop(&name) || name == header::HOST {
        return Err(EditError::ReadOnly);
    }
    Ok(name)
}

fn parse_value(value: &[u8]) -> Result<HeaderValue, EditError> {
    HeaderValue::from_bytes(value).map_err(|_| EditError::InvalidValue)
}

fn first(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    headers.get(name).map(|v| v.as_bytes().to_vec())
}

fn all_values(headers: &HeaderMap, name: &str) -> Vec<Vec<u8>> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.as_bytes().to_vec())
        .collect()
}

fn all_headers(headers: &HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn set(headers: &mut HeaderMap, name: &str, value: &[u8]) -> Result<(), EditError> {
    let name = editable_name(name)?;
    headers.insert(name, parse_value(value)?);
    Ok(())
}

fn append(headers: &mut HeaderMap, name: &str, value: &[u8]) -> Result<(), EditError> {
    let name = editable_name(name)?;
    headers.append(name, parse_value(value)?);
    Ok(())
}

fn remove(headers: &mut HeaderMap, name: &str) -> Result<(), EditError> {
    let name = editable_name(name)?;
    headers.remove(name);
    Ok(())
}

impl HostState {
    fn request(&self) -> wasmtime::Result<&RequestHead> {
        match &self.call.request {
            RequestRef::Mutable(head) => Ok(head),
            RequestRef::Shared(sent) => Ok(&sent.head),
            RequestRef::None => wasmtime::bail!("request handle used outside a hook call"),
        }
    }

    /// What request hooks may ask for besides edits; `Err(read-only)` during response hooks.
    fn directives_mut(&mut self) -> wasmtime::Result<Result<&mut Directives, EditError>> {
        match &self.call.request {
            RequestRef::Mutable(_) => Ok(Ok(&mut self.call.directives)),
            RequestRef::Shared(_) => Ok(Err(EditError::ReadOnly)),
            RequestRef::None => wasmtime::bail!("request handle used outside a hook call"),
        }
    }

    /// The request for editing; `Err(read-only)` during response hooks.
    fn request_mut(&mut self) -> wasmtime::Result<Result<&mut RequestHead, EditError>> {
        match &mut self.call.request {
            RequestRef::Mutable(head) => Ok(Ok(head)),
            RequestRef::Shared(_) => Ok(Err(EditError::ReadOnly)),
            RequestRef::None => wasmtime::bail!("request handle used outside a hook call"),
        }
    }

    fn info(&self) -> wasmtime::Result<&RequestInfo> {
        match &self.call.info {
            Some(info) => Ok(info),
            None => wasmtime::bail!("request handle used outside a hook call"),
        }
    }

    fn response(&self) -> wasmtime::Result<&ResponseHead> {
        match &self.call.response {
            Some(head) => Ok(head),
            None => wasmtime::bail!("response handle used outside a response hook"),
        }
    }

    fn response_mut(&mut self) -> wasmtime::Result<&mut ResponseHead> {
        match &mut self.call.response {
            Some(head) => Ok(head),
            None => wasmtime::bail!("response handle used outside a response hook"),
        }
    }

    fn body(&mut self) -> wasmtime::Result<&mut Bytes> {
        match &mut self.call.body {
            Some(body) => Ok(body),
            None => wasmtime::bail!("body handle used outside a body hook"),
        }
    }

    /// Apply `edit` to the request headers, or report `read-only` in response hooks.
    fn edit_request(
        &mut self,
        edit: impl FnOnce(&mut RequestHead) -> Result<(), EditError>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(self.request_mut()?.and_then(edit))
    }
}

impl Host for HostState {}

impl HostRequest for HostState {
    fn method(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<String> {
        Ok(self.request()?.method.as_str().to_owned())
    }

    fn path(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<String> {
        Ok(self.request()?.path_and_query().to_owned())
    }

    fn set_path(
        &mut self,
        _: Resource<RequestSlot>,
        path: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        self.edit_request(|head| {
            if !path.starts_with('/') {
                return Err(EditError::InvalidPath);
            }
            let pq = PathAndQuery::try_from(path).map_err(|_| EditError::InvalidPath)?;
            let mut parts = std::mem::take(&mut head.uri).into_parts();
            parts.path_and_query = Some(pq);
            head.uri = Uri::from_parts(parts).map_err(|_| EditError::InvalidPath)?;
            Ok(())
        })
    }

    fn scheme(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<String> {
        // The proxy does not terminate TLS yet; every downstream connection is plain HTTP.
        Ok("http".to_owned())
    }

    fn authority(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Option<String>> {
        Ok(self.request()?.authority().map(str::to_owned))
    }

    fn header(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(first(&self.request()?.headers, &name))
    }

    fn header_values(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
    ) -> wasmtime::Result<Vec<Vec<u8>>> {
        Ok(all_values(&self.request()?.headers, &name))
    }

    fn headers(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Headers> {
        Ok(all_headers(&self.request()?.headers))
    }

    fn set_header(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        self.edit_request(|head| set(&mut head.headers, &name, &value))
    }

    fn append_header(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        self.edit_request(|head| append(&mut head.headers, &name, &value))
    }

    fn remove_header(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        self.edit_request(|head| remove(&mut head.headers, &name))
    }

    fn client_address(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Option<String>> {
        Ok(self.info()?.client.map(|a| a.to_string()))
    }

    fn route_name(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Option<String>> {
        Ok(self.info()?.route.as_deref().map(str::to_owned))
    }

    fn listener_name(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<String> {
        Ok(self.info()?.listener.to_string())
    }

    fn direction(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Direction> {
        Ok(match self.info()?.direction {
            ListenerDirection::Inbound => Direction::Inbound,
            ListenerDirection::Outbound => Direction::Outbound,
        })
    }

    fn peer_identity(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Option<String>> {
        Ok(self.info()?.peer_identity.as_deref().map(str::to_owned))
    }

    fn upstream(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Option<String>> {
        let upstream = match &self.call.request {
            RequestRef::Mutable(_) => &self.call.directives.upstream,
            RequestRef::Shared(sent) => &sent.upstream,
            RequestRef::None => wasmtime::bail!("request handle used outside a hook call"),
        };
        Ok(upstream.as_deref().map(str::to_owned))
    }

    fn set_upstream(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(self.directives_mut()?.map(|directives| {
            // Most choices name the route's own upstream or repeat an earlier choice.
            if directives.upstream.as_deref() != Some(name.as_str()) {
                directives.upstream = Some(name.into());
            }
        }))
    }

    fn add_response_header(
        &mut self,
        _: Resource<RequestSlot>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(self.directives_mut()?.and_then(|directives| {
            let name = editable_name(&name)?;
            if name == header::CONTENT_LENGTH {
                return Err(EditError::ReadOnly);
            }
            directives
                .response_headers
                .append(name, parse_value(&value)?);
            Ok(())
        }))
    }

    fn state(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.request()?;
        Ok(self.call.state.clone())
    }

    fn set_state(
        &mut self,
        _: Resource<RequestSlot>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        self.request()?;
        if value.len() > MAX_REQUEST_STATE {
            return Ok(Err(EditError::InvalidValue));
        }
        self.call.state = Some(value);
        Ok(Ok(()))
    }

    fn drop(&mut self, _: Resource<RequestSlot>) -> wasmtime::Result<()> {
        // Only borrows are ever handed out; there is nothing to free.
        Ok(())
    }
}

impl HostResponse for HostState {
    fn status(&mut self, _: Resource<ResponseSlot>) -> wasmtime::Result<u16> {
        Ok(self.response()?.status.as_u16())
    }

    fn set_status(
        &mut self,
        _: Resource<ResponseSlot>,
        status: u16,
    ) -> wasmtime::Result<Result<(), EditError>> {
        let head = self.response_mut()?;
        Ok(match StatusCode::from_u16(status) {
            Ok(status) => {
                head.status = status;
                Ok(())
            }
            Err(_) => Err(EditError::InvalidValue),
        })
    }

    fn header(
        &mut self,
        _: Resource<ResponseSlot>,
        name: String,
    ) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(first(&self.response()?.headers, &name))
    }

    fn header_values(
        &mut self,
        _: Resource<ResponseSlot>,
        name: String,
    ) -> wasmtime::Result<Vec<Vec<u8>>> {
        Ok(all_values(&self.response()?.headers, &name))
    }

    fn headers(&mut self, _: Resource<ResponseSlot>) -> wasmtime::Result<Headers> {
        Ok(all_headers(&self.response()?.headers))
    }

    fn set_header(
        &mut self,
        _: Resource<ResponseSlot>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(set(&mut self.response_mut()?.headers, &name, &value))
    }

    fn append_header(
        &mut self,
        _: Resource<ResponseSlot>,
        name: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(append(&mut self.response_mut()?.headers, &name, &value))
    }

    fn remove_header(
        &mut self,
        _: Resource<ResponseSlot>,
        name: String,
    ) -> wasmtime::Result<Result<(), EditError>> {
        Ok(remove(&mut self.response_mut()?.headers, &name))
    }

    fn drop(&mut self, _: Resource<ResponseSlot>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl HostBody for HostState {
    fn size(&mut self, _: Resource<BodySlot>) -> wasmtime::Result<u64> {
        Ok(self.body()?.len() as u64)
    }

    fn read(&mut self, _: Resource<BodySlot>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.body()?.to_vec())
    }

    fn write(&mut self, _: Resource<BodySlot>, contents: Vec<u8>) -> wasmtime::Result<()> {
        *self.body()? = Bytes::from(contents);
        Ok(())
    }

    fn drop(&mut self, _: Resource<BodySlot>) -> wasmtime::Result<()> {
        Ok(())
    }
}
