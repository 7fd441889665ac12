//! Service discovery from the test's side: `Service` definition files for the directory
//! source, Kubernetes `Service` and `EndpointSlice` objects for the fake API server, and a
//! `Watch` client that plays a proxy.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use weft_tests::control_plane::TestControlPlane;
//! use weft_tests::discovery::{TestEndpoint, service_yaml, watch_services};
//! let cp = TestControlPlane::start().await?;
//! let backend: std::net::SocketAddr = "127.0.0.1:18080".parse()?;
//! cp.write("reviews.yaml", service_yaml("shop", "reviews", &[("http", 9080)], &[TestEndpoint::new(backend)]))?;
//! let mut watch = watch_services(cp.addr(), ("shop", "proxy-1"), &["shop"]).await?;
//! let full = watch.next().await?;
//! watch.ack(full.version).await?;
//! # Ok(()) }
//! ```

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use weft_api::v1::discovery_client::DiscoveryClient;
use weft_api::v1::{
    DiscoveryHello, DiscoveryReport, DiscoveryRequest, DiscoveryUpdate, ProxyIdentity,
    ServiceError, discovery_request::Kind,
};

use crate::control_plane::ClientCerts;

pub use weft_api::v1::{Service, ServiceEndpoint, ServicePort};

/// How long [`ServiceWatch::next`] waits for an update.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);

/// One endpoint of a service written by [`service_yaml`] or [`k8s_endpoint_slice`].
#[derive(Debug, Clone)]
pub struct TestEndpoint {
    /// The endpoint's IP and port (the port serves every port name of the service).
    pub addr: SocketAddr,
    /// Load-balancing weight (default 1; directory source only).
    pub weight: u32,
    /// Labels, like `("version", "v2")` (directory source only; for Kubernetes, label the
    /// Pod named by [`target`](Self::target)).
    pub labels: Vec<(String, String)>,
    /// `ready` (default true): false is a terminating endpoint that still serves.
    pub ready: bool,
    /// Kubernetes only: `conditions.serving` (default true); false leaves it out.
    pub serving: bool,
    /// The zone, if any.
    pub zone: Option<String>,
    /// Kubernetes only: the name of the Pod in the slice's namespace behind the endpoint.
    pub target: Option<String>,
}

impl TestEndpoint {
    /// A ready endpoint of weight 1 at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            weight: 1,
            labels: Vec::new(),
            ready: true,
            serving: true,
            zone: None,
            target: None,
        }
    }

    /// With weight `weight`.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// With label `key: value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Terminating: `ready: false` (still serving).
    pub fn terminating(mut self) -> Self {
        self.ready = false;
        self
    }

    /// Kubernetes: not serving (left out of what proxies get).
    pub fn not_serving(mut self) -> Self {
        self.ready = false;
        self.serving = false;
        self
    }

    /// In zone `zone`.
    pub fn zone(mut self, zone: &str) -> Self {
        self.zone = Some(zone.to_owned());
        self
    }

    /// Kubernetes: backed by Pod `name`.
    pub fn target(mut self, name: &str) -> Self {
        self.target = Some(name.to_owned());
        self
    }
}

/// A `Service` definition file for the directory source: `ports` as `(name, port)`, each
/// endpoint serving every port name on its address's port.
pub fn service_yaml(
    namespace: &str,
    name: &str,
    ports: &[(&str, u16)],
    endpoints: &[TestEndpoint],
) -> String {
    let mut yaml = format!(
        "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  ports:\n"
    );
    for (port_name, port) in ports {
        let _ = writeln!(yaml, "    - {{name: {port_name}, port: {port}}}");
    }
    yaml.push_str("  endpoints:");
    if endpoints.is_empty() {
        yaml.push_str(" []");
    }
    yaml.push('\n');
    for endpoint in endpoints {
        let port_map: Vec<String> = ports
            .iter()
            .map(|(port_name, _)| format!("{port_name}: {}", endpoint.addr.port()))
            .collect();
        let _ = write!(
            yaml,
            "    - address: \"{}\"\n      ports: {{{}}}\n      weight: {}\n      ready: {}\n",
            endpoint.addr.ip(),
            port_map.join(", "),
            endpoint.weight,
            endpoint.ready
        );
        if !endpoint.labels.is_empty() {
            let labels: Vec<String> = endpoint
                .labels
                .iter()
                .map(|(k, v)| format!("{k:?}: {v:?}"))
                .collect();
            let _ = writeln!(yaml, "      labels: {{{}}}", labels.join(", "));
        }
        if let Some(zone) = &endpoint.zone {
            let _ = writeln!(yaml, "      zone: {zone}");
        }
    }
    yaml
}

/// A Kubernetes core/v1 `Service` with TCP `ports` as `(name, port, appProtocol)`.
pub fn k8s_service(namespace: &str, name: &str, ports: &[(&str, u16, Option<&str>)]) -> Value {
    let ports: Vec<Value> = ports
        .iter()
        .map(|(port_name, port, app_protocol)| {
            let mut port =
                json!({"name": port_name, "port": port, "protocol": "TCP", "targetPort": port});
            if let Some(app) = app_protocol {
                port["appProtocol"] = json!(app);
            }
            port
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "ClusterIP", "ports": ports},
    })
}

/// A discovery.k8s.io/v1 `EndpointSlice` called `slice` of service `service`, with TCP
/// `ports` as `(name, port)` (every endpoint listens on them all) and `endpoints` (their
/// addresses' ports are ignored).
pub fn k8s_endpoint_slice(
    namespace: &str,
    service: &str,
    slice: &str,
    ports: &[(&str, u16)],
    endpoints: &[TestEndpoint],
) -> Value {
    let endpoints: Vec<Value> = endpoints
        .iter()
        .map(|e| {
            let mut endpoint = json!({
                "addresses": [e.addr.ip().to_string()],
                "conditions": {"ready": e.ready, "serving": e.serving, "terminating": !e.ready},
            });
            if let Some(zone) = &e.zone {
                endpoint["zone"] = json!(zone);
            }
            if let Some(pod) = &e.target {
                endpoint["targetRef"] = json!({"kind": "Pod", "namespace": namespace, "name": pod});
            }
            endpoint
        })
        .collect();
    let ports: Vec<Value> = ports
        .iter()
        .map(|(name, port)| json!({"name": name, "port": port, "protocol": "TCP"}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    })
}

/// A core/v1 `Pod` called `name` with `labels` (for subsets of Kubernetes endpoints).
pub fn k8s_pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Value {
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
    })
}

/// A proxy's `Watch` stream, opened by [`watch_services`].
#[derive(Debug)]
pub struct ServiceWatch {
    requests: mpsc::Sender<DiscoveryRequest>,
    updates: tonic::Streaming<DiscoveryUpdate>,
}

/// Opens a `Watch` stream as proxy `(namespace, name)` for the services of `namespaces`
/// (empty: all), in plain text.
pub async fn watch_services(
    addr: SocketAddr,
    identity: (&str, &str),
    namespaces: &[&str],
) -> anyhow::Result<ServiceWatch> {
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    watch_on(channel, identity, namespaces).await
}

/// [`watch_services`] over TLS with the client certificate of `certs` (none: no client
/// certificate), trusting `certs.ca` for the control plane (`localhost`).
pub async fn watch_services_tls(
    addr: SocketAddr,
    certs: &ClientCerts,
    client_certificate: bool,
    identity: (&str, &str),
    namespaces: &[&str],
) -> anyhow::Result<ServiceWatch> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&certs.ca)?))
        .domain_name("localhost");
    if client_certificate {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&certs.cert)?,
            std::fs::read(&certs.key)?,
        ));
    }
    let channel = Channel::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr} with TLS"))?;
    watch_on(channel, identity, namespaces).await
}

/// [`watch_services`] on a channel the caller made (several streams may share one).
pub async fn watch_on(
    channel: Channel,
    (namespace, name): (&str, &str),
    namespaces: &[&str],
) -> anyhow::Result<ServiceWatch> {
    let (requests, rx) = mpsc::channel(16);
    requests
        .send(DiscoveryRequest {
            kind: Some(Kind::Hello(DiscoveryHello {
                identity: Some(ProxyIdentity {
                    name: name.to_owned(),
                    namespace: namespace.to_owned(),
                    labels: Default::default(),
                }),
                namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            })),
        })
        .await?;
    let mut client =
        DiscoveryClient::new(channel).max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES);
    let response = tokio::time::timeout(UPDATE_TIMEOUT, client.watch(ReceiverStream::new(rx)))
        .await
        .context("Watch did not answer in time")??;
    Ok(ServiceWatch {
        requests,
        updates: response.into_inner(),
    })
}

impl ServiceWatch {
    /// The next update (up to [`UPDATE_TIMEOUT`]); an error if the stream fails or ends.
    pub async fn next(&mut self) -> anyhow::Result<DiscoveryUpdate> {
        self.next_within(UPDATE_TIMEOUT).await
    }

    /// The next update within `limit`.
    pub async fn next_within(&mut self, limit: Duration) -> anyhow::Result<DiscoveryUpdate> {
        match tokio::time::timeout(limit, self.updates.message()).await {
            Err(_) => bail!("no discovery update within {limit:?}"),
            Ok(Err(status)) => Err(anyhow::Error::new(status).context("the Watch stream failed")),
            Ok(Ok(None)) => bail!("the Watch stream ended"),
            Ok(Ok(Some(update))) => Ok(update),
        }
    }

    /// Whether an update arrives within `limit` (for checking that none does).
    pub async fn quiet_for(&mut self, limit: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(limit, self.updates.message()).await {
            Err(_) => Ok(()),
            Ok(Ok(Some(update))) => bail!("expected no update, got {update:?}"),
            Ok(Ok(None)) => bail!("the Watch stream ended"),
            Ok(Err(status)) => Err(anyhow::Error::new(status).context("the Watch stream failed")),
        }
    }

    /// The gRPC status the stream ends with (up to [`UPDATE_TIMEOUT`]), skipping updates.
    pub async fn error(&mut self) -> anyhow::Result<tonic::Status> {
        let deadline = tokio::time::Instant::now() + UPDATE_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.updates.message()).await {
                Err(_) => bail!("the Watch stream did not fail within {UPDATE_TIMEOUT:?}"),
                Ok(Err(status)) => return Ok(status),
                Ok(Ok(None)) => bail!("the Watch stream ended without an error"),
                Ok(Ok(Some(_))) => {}
            }
        }
    }

    /// Answers update `version` with an ACK.
    pub async fn ack(&self, version: u64) -> anyhow::Result<()> {
        self.report(version, true, &[]).await
    }

    /// Answers update `version` with a NACK giving `(service, message)` reasons.
    pub async fn nack(&self, version: u64, errors: &[(&str, &str)]) -> anyhow::Result<()> {
        self.report(version, false, errors).await
    }

    async fn report(
        &self,
        version: u64,
        accepted: bool,
        errors: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        self.requests
            .send(DiscoveryRequest {
                kind: Some(Kind::Report(DiscoveryReport {
                    version,
                    accepted,
                    errors: errors
                        .iter()
                        .map(|(service, message)| ServiceError {
                            service: (*service).to_owned(),
                            message: (*message).to_owned(),
                        })
                        .collect(),
                })),
            })
            .await
            .context("the Watch stream is closed")
    }
}

/// The `namespace/name` of each service in `update`, sorted.
pub fn service_names(update: &DiscoveryUpdate) -> Vec<String> {
    let mut names: Vec<String> = update
        .services
        .iter()
        .map(|s| format!("{}/{}", s.namespace, s.name))
        .collect();
    names.sort();
    names
}

/// The endpoints of `service` as `(address:port of port name, ready)`, sorted.
pub fn endpoints_of(service: &Service, port_name: &str) -> Vec<(String, bool)> {
    let mut endpoints: Vec<(String, bool)> = service
        .endpoints
        .iter()
        .map(|e| {
            let port = e.ports.get(port_name).copied().unwrap_or(0);
            let addr = match e.address.parse::<std::net::IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, port as u16).to_string(),
                Err(_) => format!("{}:{port}", e.address),
            };
            (addr, e.ready)
        })
        .collect();
    endpoints.sort();
    endpoints
}
