//! The `Discovery.Watch` stream: services and endpoints in, ACK or NACK reports out, on the
//! same channel as the filter subscription.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use weft_api::v1::discovery_client::DiscoveryClient;
use weft_api::v1::{DiscoveryHello, DiscoveryRequest, ProxyIdentity, discovery_request::Kind};

use crate::discovery::Registry;

/// How a watch ended without failing.
enum Watched {
    /// The control plane serves no discovery (UNIMPLEMENTED): static upstreams only.
    Unsupported,
    /// The control plane closed the stream.
    Ended,
}

/// Watch services for as long as the session lasts (it aborts this): the stream again after
/// it ends or fails, after a pause that doubles from 1 s to 30 s (back to 1 s after a minute
/// of watching); meanwhile the proxy routes by the services it knows.
pub(super) async fn watch_while_connected(
    channel: Channel,
    identity: ProxyIdentity,
    registry: Arc<Registry>,
) {
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    const MAX_PAUSE: Duration = Duration::from_secs(30);
    let mut pause = FIRST_PAUSE;
    loop {
        let started = Instant::now();
        match watch(channel.clone(), identity.clone(), registry.clone()).await {
            Ok(Watched::Unsupported) => return,
            Ok(Watched::Ended) => {
                tracing::info!(retry_in = ?pause, "the service discovery stream ended");
            }
            Err(e) => tracing::warn!(error = %e, retry_in = ?pause,
                "service discovery stream failed; routing by the services known"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            pause = FIRST_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Watch services until the stream ends or fails.
async fn watch(
    channel: Channel,
    identity: ProxyIdentity,
    registry: Arc<Registry>,
) -> Result<Watched, String> {
    let mut client = DiscoveryClient::new(channel)
        .max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(weft_api::MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel(4);
    let send = |kind| DiscoveryRequest { kind: Some(kind) };
    tx.send(send(Kind::Hello(DiscoveryHello {
        identity: Some(identity),
        namespaces: registry.namespaces().to_vec(),
    })))
    .await
    .map_err(|_| "the request stream closed".to_owned())?;
    let mut updates = match client.watch(ReceiverStream::new(rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            tracing::info!("the control plane does not serve service discovery");
            return Ok(Watched::Unsupported);
        }
        Err(status) => return Err(super::status_message(&status)),
    };
    while let Some(update) = updates
        .message()
        .await
        .map_err(|s| super::status_message(&s))?
    {
        // Building upstreams is quick (no I/O); the registry swaps the result in whole.
        let report = registry.apply(update);
        tx.send(send(Kind::Report(report)))
            .await
            .map_err(|_| "the request stream closed".to_owned())?;
    }
    Ok(Watched::Ended)
}
