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
