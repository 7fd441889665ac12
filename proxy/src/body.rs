//! The body type that flows through the proxy, and helpers to make or bound one.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

/// Errors from any body: the client's, the upstream's, or a limit.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the proxy sends or forwards. Streams; never buffered unless a filter asks.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A body of known bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// The body grew past the configured limit.
#[derive(Debug, thiserror::Error)]
#[error("body exceeds the limit of {limit} bytes")]
pub(crate) struct TooLarge {
    pub(crate) limit: u64,
}

pin_project_lite::pin_project! {
    /// A streaming body that fails once more than `limit` bytes have passed.
    pub(crate) struct Limited<B> {
        #[pin]
        inner: B,
        remaining: u64,
        limit: u64,
    }
}

impl<B> Limited<B> {
    pub(crate) fn new(inner: B, limit: u64) -> Self {
        Self {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<B> Body for Limited<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        return Poll::Ready(Some(Err(Box::new(TooLarge { limit: *this.limit }))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body failed: a malformed chunk, a reset stream, a connection closed
/// mid-body. The client's fault, so a 400, never an upstream failure.
#[derive(Debug, thiserror::Error)]
#[error("the client's request body failed: {0}")]
pub(crate) struct ClientBodyError(#[source] pub(crate) hyper::Error);

/// The client's body, streamed, failing once more than `limit` bytes have passed; its own
/// errors are [`ClientBodyError`]s.
pub(crate) fn from_client(incoming: hyper::body::Incoming, limit: u64) -> ProxyBody {
    Limited::new(
        incoming.map_err(|e| BoxError::from(ClientBodyError(e))),
        limit,
    )
    .boxed_unsync()
}

/// Whether `error` (from the upstream client) was caused by the client's body.
pub(crate) fn is_client_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<ClientBodyError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether `error` (from a body) was a [`TooLarge`].
pub(crate) fn is_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<TooLarge>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// A buffered body, with the trailers it arrived with (gRPC needs them).
pub(crate) fn with_trailers(bytes: Bytes, trailers: Option<http::HeaderMap>) -> ProxyBody {
    match trailers {
        None => full(bytes),
        Some(trailers) => {
            let frames = [Frame::data(bytes), Frame::trailers(trailers)];
            http_body_util::StreamBody::new(futures_util::stream::iter(
                frames.into_iter().map(Ok::<_, BoxError>),
            ))
            .boxed_unsync()
        }
    }
}

/// A request body that can be sent again (for a retry), or one that cannot.
pub(crate) enum Replay {
    /// The whole body, read (it ended within the limit).
    Kept(Bytes, Option<http::HeaderMap>),
    /// Too long to keep: what was read so far, then the rest, streamed once.
    Once(ProxyBody),
}

impl Replay {
    /// A copy to send (the bytes are shared, not copied).
    pub(crate) fn copy(&self) -> Option<ProxyBody> {
        match self {
            Replay::Kept(bytes, trailers) => Some(with_trailers(bytes.clone(), trailers.clone())),
            Replay::Once(_) => None,
        }
    }
}

/// Read `body` up to `limit` bytes so that it can be replayed; a body that goes on past the
/// limit is given back whole (what was read, then the rest) to be sent once.
pub(crate) async fn keep_for_replay(mut body: ProxyBody, limit: u64) -> Result<Replay, BoxError> {
    if body.is_end_stream() {
        return Ok(Replay::Kept(Bytes::new(), None));
    }
    if body.size_hint().lower() > limit {
        return Ok(Replay::Once(body));
    }
    let mut read: Vec<Bytes> = Vec::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        match frame.into_data() {
            Ok(data) => {
                total += data.len() as u64;
                read.push(data);
                if total > limit {
                    let prefix = futures_util::stream::iter(
                        read.into_iter().map(|b| Ok::<_, BoxError>(Frame::data(b))),
                    );
                    let rest = http_body_util::BodyStream::new(body);
                    let stream = futures_util::StreamExt::chain(prefix, rest);
                    return Ok(Replay::Once(
                        http_body_util::StreamBody::new(stream).boxed_unsync(),
                    ));
                }
            }
            Err(frame) => {
                let trailers = frame.into_trailers().ok();
                return Ok(Replay::Kept(concat(read), trailers));
            }
        }
    }
    Ok(Replay::Kept(concat(read), None))
}

fn concat(parts: Vec<Bytes>) -> Bytes {
    match parts.len() {
        0 => Bytes::new(),
        1 => parts.into_iter().next().unwrap_or_default(),
        _ => {
            let mut all = bytes::BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
            for part in parts {
                all.extend_from_slice(&part);
            }
            all.freeze()
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that holds `guard` until it is dropped (a circuit-breaker slot).
    pub(crate) struct Holding<B, G> {
        #[pin]
        inner: B,
        guard: G,
    }
}

/// `body`, holding `guard` until the body is done with; boxed once (an upstream's body goes
/// straight in, not boxed first).
pub(crate) fn holding<B, G>(body: B, guard: G) -> ProxyBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    G: Send + 'static,
{
    Holding { inner: body, guard }.boxed_unsync()
}

impl<B, G> Body for Holding<B, G>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project()
            .inner
            .poll_frame(cx)
            .map(|frame| frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
