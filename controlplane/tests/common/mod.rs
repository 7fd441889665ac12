//! Helpers shared by the integration tests: a real server on 127.0.0.1:0 and a proxy-side
//! client speaking the generated protocol.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use weft_api::v1::filter_distribution_client::FilterDistributionClient;
use weft_api::v1::{
    FilterError, Hello, ProxyIdentity, Report, Snapshot, SubscribeRequest, subscribe_request::Kind,
};
use weft_controlplane::definition::{FailurePolicy, FilterSettings, MatchSpec, Phase};
use weft_controlplane::server::{self, ServerHandle};
use weft_controlplane::{CatalogFilter, ControlPlane};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn settings() -> FilterSettings {
    FilterSettings {
        match_labels: BTreeMap::new(),
        phase: Phase::Unspecified,
        priority: 0,
        match_spec: MatchSpec::default(),
        failure_policy: FailurePolicy::FailClosed,
        time_budget_ms: 0,
        max_memory_bytes: 0,
        config_json: String::new(),
    }
}

/// A catalog filter for `wasm` and the module entry for it.
pub fn filter(
    namespace: &str,
    name: &str,
    wasm: &'static [u8],
) -> (CatalogFilter, (String, Bytes)) {
    let sha = digest(wasm);
    (
        CatalogFilter {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            generation: 1,
            settings: settings(),
            module_sha256: sha.clone(),
        },
        (sha, Bytes::from_static(wasm)),
    )
}

pub fn catalog(filters: Vec<(CatalogFilter, (String, Bytes))>) -> weft_controlplane::Catalog {
    let mut modules = HashMap::new();
    let mut list = Vec::new();
    for (filter, (sha, bytes)) in filters {
        modules.insert(sha, bytes);
        list.push(filter);
    }
    weft_controlplane::Catalog {
        filters: list,
        modules,
    }
}

pub async fn start(cp: &ControlPlane) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    server::serve(cp, listener, None, None).await.unwrap()
}

pub fn hello(namespace: &str, name: &str, labels: &[(&str, &str)], digests: &[String]) -> Hello {
    Hello {
        identity: Some(ProxyIdentity {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }),
        module_digests: digests.to_vec(),
        serving_version: 0,
    }
}

/// The proxy side of one Subscribe stream.
pub struct TestProxy {
    pub tx: mpsc::Sender<SubscribeRequest>,
    pub snapshots: Streaming<Snapshot>,
}

pub async fn client(addr: std::net::SocketAddr) -> FilterDistributionClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    FilterDistributionClient::new(channel).max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES)
}

/// Opens a stream with `first` as the first message.
pub async fn subscribe_with(
    client: &mut FilterDistributionClient<Channel>,
    first: SubscribeRequest,
) -> Result<TestProxy, Status> {
    let (tx, rx) = mpsc::channel(8);
    tx.send(first).await.unwrap();
    let response = client.subscribe(ReceiverStream::new(rx)).await?;
    Ok(TestProxy {
        tx,
        snapshots: response.into_inner(),
    })
}

pub async fn subscribe(addr: std::net::SocketAddr, hello: Hello) -> Result<TestProxy, Status> {
    let mut client = client(addr).await;
    subscribe_with(
        &mut client,
        SubscribeRequest {
            kind: Some(Kind::Hello(hello)),
        },
    )
    .await
}

impl TestProxy {
    pub async fn next(&mut self) -> Snapshot {
        tokio::time::timeout(WAIT, self.snapshots.message())
            .await
            .expect("no snapshot within 5s")
            .expect("stream failed")
            .expect("stream ended")
    }

    /// Asserts no snapshot arrives within `wait`.
    pub async fn expect_quiet(&mut self, wait: Duration) {
        if let Ok(message) = tokio::time::timeout(wait, self.snapshots.message()).await {
            panic!("expected no snapshot, got {message:?}");
        }
    }

    pub async fn report(&self, version: u64, accepted: bool, errors: &[(&str, &str)]) {
        let report = Report {
            version,
            accepted,
            errors: errors
                .iter()
                .map(|(f, m)| FilterError {
                    filter: (*f).to_owned(),
                    message: (*m).to_owned(),
                })
                .collect(),
            serving_version: if accepted { version } else { 0 },
        };
        self.tx
            .send(SubscribeRequest {
                kind: Some(Kind::Report(report)),
            })
            .await
            .unwrap();
    }
}

/// Polls `check` until it holds or 5 s pass.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
