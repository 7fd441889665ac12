//! Discovered services: what the control plane's `Discovery.Watch` stream says exists, and
//! how a request's authority finds one.
//!
//! Each port of a service is an [`Upstream`] named `name.namespace:port`. An update is
//! checked whole before anything changes: one bad service refuses the update (a NACK naming
//! it) and the proxy keeps routing by what it had. Services that stay keep their upstreams —
//! pools, endpoint state, budgets — and take new endpoints in place, so requests in flight
//! are untouched and connections to removed endpoints drain.
//!
//! A request's authority names a service as `name` (this proxy's namespace), `name.ns`,
//! `name.ns.svc` or `name.ns.svc.<cluster domain>`, with or without `:port`. Without a port,
//! port 80 if the service has it, else its only port.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use weft_api::v1::{self as pb, DiscoveryReport, DiscoveryUpdate, ServiceError};
use weft_identity::tls::MeshTls;

use crate::config::{
    DiscoveryConfig, EndpointConfig, UpstreamConfig, UpstreamProtocol, UpstreamRef,
};
use crate::mesh::Handshakes;
use crate::metrics::Metrics;
use crate::respond::Refusal;
use crate::upstream::Upstream;

/// The most services one proxy keeps; an update over it is refused.
const MAX_SERVICES: usize = 20_000;
/// The most endpoints one service may have.
const MAX_ENDPOINTS: usize = 10_000;

/// One discovered service.
#[derive(Debug)]
pub(crate) struct Service {
    /// `namespace/name`.
    key: String,
    /// Its ports, each an upstream.
    ports: Vec<(u16, Arc<Upstream>)>,
    /// What it was built from, to tell a change from none.
    source: pb::Service,
}

/// Every discovered service, swapped whole on an update.
#[derive(Debug, Default)]
pub(crate) struct Services {
    by_key: HashMap<String, Arc<Service>>,
    /// Every name a service answers to (see the module docs), lowercase.
    by_host: HashMap<String, Arc<Service>>,
    version: u64,
}

/// The discovered services and what it takes to build their upstreams.
pub(crate) struct Registry {
    current: ArcSwap<Services>,
    namespace: String,
    config: DiscoveryConfig,
    mesh: Arc<MeshTls>,
    handshakes: Handshakes,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.load();
        f.debug_struct("Registry")
            .field("services", &current.by_key.len())
            .field("version", &current.version)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// `namespace` is the proxy's own, for bare service names.
    pub(crate) fn new(
        namespace: String,
        config: DiscoveryConfig,
        mesh: Arc<MeshTls>,
        handshakes: Handshakes,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            current: ArcSwap::from_pointee(Services::default()),
            namespace,
            config,
            mesh,
            handshakes,
            metrics,
        }
    }

    /// The namespaces to ask the control plane for.
    pub(crate) fn namespaces(&self) -> &[String] {
        &self.config.namespaces
    }

    /// The upstream for a request's authority (`host[:port]`).
    pub(crate) fn by_authority(&self, authority: &str) -> Result<Arc<Upstream>, Refusal> {
        let unknown = |detail: String| Refusal::UnknownService {
            authority: authority.to_owned(),
            detail,
        };
        let (host, port) =
            split_authority(authority).ok_or_else(|| unknown("not a service name".to_owned()))?;
        let current = self.current.load();
        let host_lower;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            host_lower = host.to_ascii_lowercase();
            host_lower.as_str()
        } else {
            host
        };
        let service = current.by_host.get(host).ok_or_else(|| {
            unknown(format!(
                "no such service is known ({} discovered)",
                current.by_key.len()
            ))
        })?;
        port_of(service, port).map_err(unknown)
    }

    /// The upstream a route or filter names: `name[.ns…][:port]`. None when unknown.
    pub(crate) fn by_name(&self, target: &UpstreamRef) -> Option<Arc<Upstream>> {
        self.by_authority(&target.name).ok()
    }

    /// Check and apply an update; the report to send back.
    pub(crate) fn apply(&self, update: DiscoveryUpdate) -> DiscoveryReport {
        let version = update.version;
        match self.prepare(update) {
            Ok(services) => {
                let count = services.by_key.len();
                let kept: HashSet<&str> = services
                    .by_key
                    .values()
                    .flat_map(|s| s.ports.iter().map(|(_, u)| &*u.name))
                    .collect();
                let gone: Vec<Arc<str>> = self
                    .current
                    .load()
                    .by_key
                    .values()
                    .flat_map(|s| s.ports.iter().map(|(_, u)| u.name.clone()))
                    .filter(|name| !kept.contains(&**name))
                    .collect();
                drop(kept);
                self.current.store(Arc::new(services));
                for name in &gone {
                    self.metrics.forget_upstream(name);
                }
                self.metrics.set_discovery(version, count);
                self.metrics.config_update("discovery", "applied");
                tracing::info!(version, services = count, "discovery update applied");
                DiscoveryReport {
                    version,
                    accepted: true,
                    errors: Vec::new(),
                }
            }
            Err(errors) => {
                self.metrics.config_update("discovery", "rejected");
                for e in &errors {
                    tracing::error!(version, service = %e.service, error = %e.message,
                        "discovery update refused; routing by the previous services");
                }
                DiscoveryReport {
                    version,
                    accepted: false,
                    errors,
                }
            }
        }
    }

    fn prepare(&self, update: DiscoveryUpdate) -> Result<Services, Vec<ServiceError>> {
        let current = self.current.load();
        let mut by_key: HashMap<String, Arc<Service>> = if update.full {
            HashMap::new()
        } else {
            current.by_key.clone()
        };
        let mut errors = Vec::new();
        for key in &update.removed {
            by_key.remove(key);
        }
        for source in update.services {
            let key = format!("{}/{}", source.namespace, source.name);
            // Unchanged (a full update after a reconnect resends everything): keep it.
            if let Some(old) = current.by_key.get(&key)
                && old.source == source
            {
                by_key.insert(key, old.clone());
                continue;
            }
            match self.service(&key, source, current.by_key.get(&key)) {
                Ok(service) => {
                    by_key.insert(key, Arc::new(service));
                }
                Err(message) => errors.push(ServiceError {
                    service: key,
                    message,
                }),
            }
        }
        if by_key.len() > MAX_SERVICES {
            errors.push(ServiceError {
                service: String::new(),
                message: format!(
                    "{} services: a proxy keeps at most {MAX_SERVICES}; narrow `discovery.namespaces`",
                    by_key.len()
                ),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut by_host = HashMap::with_capacity(by_key.len() * 4);
        for service in by_key.values() {
            let (ns, name) = service
                .key
                .split_once('/')
                .unwrap_or(("", service.key.as_str()));
            if ns == self.namespace {
                by_host.insert(name.to_owned(), service.clone());
            }
            by_host.insert(format!("{name}.{ns}"), service.clone());
            by_host.insert(format!("{name}.{ns}.svc"), service.clone());
            by_host.insert(
                format!("{name}.{ns}.svc.{}", self.config.cluster_domain),
                service.clone(),
            );
        }
        Ok(Services {
            by_key,
            by_host,
            version: update.version,
        })
    }

    /// Check one service and build (or update in place) its upstreams.
    fn service(
        &self,
        key: &str,
        source: pb::Service,
        old: Option<&Arc<Service>>,
    ) -> Result<Service, String> {
        for (what, name) in [("namespace", &source.namespace), ("name", &source.name)] {
            if !is_dns_label(name) {
                return Err(format!("{what} {name:?} is not a DNS label"));
            }
        }
        let origin = if source.origin.is_empty() {
            format!("Service {key}")
        } else {
            source.origin.clone()
        };
        let policy = weft_traffic::policy::from_json(&source.policy_json, Path::new(&origin))
            .map_err(|e| format!("policy_json: {e}"))?;
        if source.ports.is_empty() {
            return Err("no ports".to_owned());
        }
        if source.endpoints.len() > MAX_ENDPOINTS {
            return Err(format!(
                "{} endpoints: at most {MAX_ENDPOINTS}",
                source.endpoints.len()
            ));
        }
        let mut names = BTreeMap::new();
        for port in &source.ports {
            let number = u16::try_from(port.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port {} is out of range", port.port))?;
            if names.insert(port.name.as_str(), number).is_some() {
                return Err(format!("port name {:?} is used twice", port.name));
            }
            if !matches!(port.protocol.as_str(), "" | "http1" | "http2") {
                return Err(format!(
                    "port {:?}: unknown protocol {:?} (expected http1, http2 or empty)",
                    port.name, port.protocol
                ));
            }
        }
        let mut addresses = Vec::with_capacity(source.endpoints.len());
        for endpoint in &source.endpoints {
            let ip: IpAddr = endpoint.address.parse().map_err(|_| {
                format!(
                    "endpoint {:?} ({}): not an IP address",
                    endpoint.address, endpoint.target
                )
            })?;
            for (name, port) in &endpoint.ports {
                if !names.contains_key(name.as_str()) {
                    return Err(format!(
                        "endpoint {} ({}): port name {name:?} is not a port of the service",
                        endpoint.address, endpoint.target
                    ));
                }
                if !(1..=65_535).contains(port) {
                    return Err(format!(
                        "endpoint {} ({}): port {name:?} is {port}, not 1–65535",
                        endpoint.address, endpoint.target
                    ));
                }
            }
            addresses.push(ip);
        }
        let mut ports = Vec::with_capacity(source.ports.len());
        for port in &source.ports {
            let number = names[port.name.as_str()];
            let endpoints: Vec<EndpointConfig> = source
                .endpoints
                .iter()
                .zip(&addresses)
                .filter_map(|(e, ip)| {
                    // In range: checked above.
                    let target = u16::try_from(*e.ports.get(&port.name)?).ok()?;
                    let address = match ip {
                        IpAddr::V4(v4) => format!("{v4}:{target}"),
                        IpAddr::V6(v6) => format!("[{v6}]:{target}"),
                    };
                    Some(EndpointConfig {
                        address,
                        weight: e.weight.clamp(1, 10_000),
                        labels: e.labels.clone().into_iter().collect(),
                        ready: e.ready,
                    })
                })
                .collect();
            let config = UpstreamConfig {
                name: format!("{}.{}:{number}", source.name, source.namespace),
                endpoints,
                protocol: match port.protocol.as_str() {
                    "http1" => UpstreamProtocol::Http1,
                    "http2" => UpstreamProtocol::Http2,
                    _ => UpstreamProtocol::Auto,
                },
                connect_timeout: policy.connect_timeout.unwrap_or(Duration::from_secs(1)),
                timeout: policy.timeout.unwrap_or(Duration::from_secs(30)),
                idle_timeout: policy.idle_timeout.unwrap_or(Duration::from_secs(90)),
                tls: self.config.tls.clone(),
                policy: policy.clone(),
            };
            let reused = old.and_then(|old| {
                let (_, upstream) = old.ports.iter().find(|(p, _)| *p == number)?;
                Upstream::same_but_endpoints(upstream.config(), &config).then(|| upstream.clone())
            });
            let upstream = match reused {
                Some(upstream) => {
                    upstream.set_endpoints(&config.endpoints);
                    upstream
                }
                None => Upstream::new(
                    &config,
                    &self.mesh,
                    &self.handshakes,
                    self.metrics.upstream(&config.name),
                ),
            };
            ports.push((number, upstream));
        }
        Ok(Service {
            key: key.to_owned(),
            ports,
            source,
        })
    }
}

fn port_of(service: &Service, port: Option<u16>) -> Result<Arc<Upstream>, String> {
    let list = || {
        service
            .ports
            .iter()
            .map(|(p, _)| p.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let found = match port {
        Some(port) => service.ports.iter().find(|(p, _)| *p == port),
        None => service
            .ports
            .iter()
            .find(|(p, _)| *p == 80)
            .or_else(|| (service.ports.len() == 1).then(|| &service.ports[0])),
    };
    match (found, port) {
        (Some((_, upstream)), _) => Ok(upstream.clone()),
        (None, Some(port)) => Err(format!(
            "service {} has no port {port} (ports: {})",
            service.key,
            list()
        )),
        (None, None) => Err(format!(
            "service {} has several ports and none is 80: name one (ports: {})",
            service.key,
            list()
        )),
    }
}

/// `host` and the port, if any; None for IP literals and malformed authorities.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.starts_with('[') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse::<u16>().ok()?)),
        None => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return None;
    }
    Some((host, port))
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_authorities() {
        assert_eq!(split_authority("reviews"), Some(("reviews", None)));
        assert_eq!(
            split_authority("reviews.shop.svc.cluster.local.:9080"),
            Some(("reviews.shop.svc.cluster.local", Some(9080)))
        );
        assert_eq!(split_authority("10.0.0.1:80"), None);
        assert_eq!(split_authority("[::1]:80"), None);
        assert_eq!(split_authority("reviews:http"), None);
    }
}
