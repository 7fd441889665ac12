//! The `Service` definition of the directory source: a service's ports, its endpoints and its
//! traffic policy, checked and turned into what a `DiscoveryUpdate` carries.
//!
//! ```yaml
//! apiVersion: weft.dev/v1alpha1          # optional; if present must be this
//! kind: Service                          # required: a file without `kind` is a WasmFilter
//! metadata: {name: reviews, namespace: shop}   # DNS labels; namespace default "default"
//! spec:
//!   ports:
//!     - {name: http, port: 9080, protocol: http1}   # protocol: http1 | http2 | grpc (= http2);
//!                                                   # omitted: the client's
//!   endpoints:
//!     - address: 127.0.0.1               # an IP address
//!       ports: {http: 18080}             # the endpoint's port for every service port name
//!       weight: 3                        # 0..=10000, default 1; 0 takes no new requests
//!       labels: {version: v2}            # for subsets
//!       zone: zone-a
//!       ready: true                      # default true; false: terminating
//!     - address: 127.0.0.1:18081         # IP:port, when the service has exactly one port
//!   trafficPolicy: {load_balancer: least_request, retries: {attempts: 2}}   # weft_traffic
//! ```
//!
//! Every error names the file, line, column and field
//! (`shop.yaml:9:18: spec.endpoints[0].ports.htp: …`).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::Deserialize;
use weft_api::v1;
use weft_traffic::policy::RawPolicy;
use weft_yaml::{ConfigError, Document, FieldPath};

use crate::definition::{API_VERSION, DEFAULT_NAMESPACE};

/// The `kind` of a service definition.
pub const KIND: &str = "Service";

/// The largest endpoint weight: weights are relative, and a bound keeps sums far from
/// overflow in every balancer.
pub const MAX_WEIGHT: u32 = 10_000;

/// The most ports and endpoints a service may have: a bound on what one file (or object)
/// can make every proxy hold.
pub const MAX_PORTS: usize = 64;
/// See [`MAX_PORTS`].
pub const MAX_ENDPOINTS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceFile {
    #[serde(default)]
    api_version: Option<String>,
    kind: String,
    metadata: ServiceMetadata,
    spec: ServiceSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceMetadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceSpec {
    ports: Vec<PortSpec>,
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
    #[serde(default)]
    traffic_policy: Option<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortSpec {
    name: String,
    port: i64,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointSpec {
    address: String,
    #[serde(default)]
    ports: Option<BTreeMap<String, i64>>,
    #[serde(default)]
    weight: Option<i64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    zone: Option<String>,
    #[serde(default)]
    ready: Option<bool>,
}

/// Whether the YAML text `src` declares `kind: Service` (the directory source's test for
/// which definition a file holds). Text that does not parse is not a service: the
/// `WasmFilter` reader reports it.
pub fn is_service(src: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        kind: Option<serde_norway::Value>,
    }
    matches!(
        serde_norway::from_str::<Probe>(src),
        Ok(Probe { kind: Some(serde_norway::Value::String(kind)) }) if kind == KIND
    )
}

/// Reads and checks a `Service` definition file: the service as discovery sends it, its
/// origin the file's path.
pub fn parse_service_file(src: &str, path: &Path) -> Result<v1::Service, ConfigError> {
    let doc = Document::new(src, path);
    let file: ServiceFile = doc.parse()?;
    let root = FieldPath::root();
    if let Some(version) = &file.api_version
        && version != API_VERSION
    {
        return Err(doc.error(
            &root.key("apiVersion"),
            format!("unsupported apiVersion {version:?}; expected {API_VERSION:?}"),
        ));
    }
    if file.kind != KIND {
        return Err(doc.error(
            &root.key("kind"),
            format!("expected {KIND:?}, got {:?}", file.kind),
        ));
    }
    let meta = root.key("metadata");
    check_dns_label(&file.metadata.name).map_err(|m| doc.error(&meta.key("name"), m))?;
    let namespace = file
        .metadata
        .namespace
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    check_dns_label(&namespace).map_err(|m| doc.error(&meta.key("namespace"), m))?;

    let spec = root.key("spec");
    let ports = check_ports(&doc, &spec.key("ports"), &file.spec.ports)?;
    let endpoints = check_endpoints(&doc, &spec.key("endpoints"), &ports, file.spec.endpoints)?;
    let policy_json = match file.spec.traffic_policy {
        None => String::new(),
        Some(raw) => {
            let json = raw.to_json();
            weft_traffic::policy::check(&doc, &spec.key("trafficPolicy"), raw)?;
            json
        }
    };
    Ok(v1::Service {
        namespace,
        name: file.metadata.name,
        ports,
        endpoints,
        policy_json,
        origin: path.display().to_string(),
    })
}

fn check_ports(
    doc: &Document<'_>,
    path: &FieldPath,
    specs: &[PortSpec],
) -> Result<Vec<v1::ServicePort>, ConfigError> {
    if specs.is_empty() {
        return Err(doc.error(path, "a service needs at least one port"));
    }
    if specs.len() > MAX_PORTS {
        return Err(doc.error(path, format!("{} ports; at most {MAX_PORTS}", specs.len())));
    }
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    let mut ports = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let at = path.index(i);
        check_dns_label(&spec.name).map_err(|m| doc.error(&at.key("name"), m))?;
        if !names.insert(spec.name.as_str()) {
            return Err(doc.error(
                &at.key("name"),
                format!("duplicate port name {:?}", spec.name),
            ));
        }
        let port = check_port_number(spec.port).map_err(|m| doc.error(&at.key("port"), m))?;
        if !numbers.insert(port) {
            return Err(doc.error(&at.key("port"), format!("duplicate port {port}")));
        }
        let protocol = match spec.protocol.as_deref() {
            None => "",
            Some("http1") => "http1",
            Some("http2" | "grpc") => "http2",
            Some(other) => {
                return Err(doc.error(
                    &at.key("protocol"),
                    format!(
                        "unknown protocol {other:?}; expected http1, http2 or grpc (omit it \
                         to speak the client's protocol)"
                    ),
                ));
            }
        };
        ports.push(v1::ServicePort {
            name: spec.name.clone(),
            port,
            protocol: protocol.to_owned(),
        });
    }
    Ok(ports)
}

fn check_endpoints(
    doc: &Document<'_>,
    path: &FieldPath,
    ports: &[v1::ServicePort],
    specs: Vec<EndpointSpec>,
) -> Result<Vec<v1::ServiceEndpoint>, ConfigError> {
    if specs.len() > MAX_ENDPOINTS {
        return Err(doc.error(
            path,
            format!("{} endpoints; at most {MAX_ENDPOINTS}", specs.len()),
        ));
    }
    let any = !specs.is_empty();
    let mut endpoints = Vec::with_capacity(specs.len());
    let mut weighted = false;
    for (i, spec) in specs.into_iter().enumerate() {
        let at = path.index(i);
        let (address, shorthand_port) = parse_address(&spec.address, ports.len())
            .map_err(|m| doc.error(&at.key("address"), m))?;
        let endpoint_ports = match (shorthand_port, spec.ports) {
            (Some(_), Some(_)) => {
                return Err(doc.error(
                    &at.key("ports"),
                    "give the port either in `address` (IP:port) or in `ports`, not both",
                ));
            }
            (Some(port), None) => [(ports[0].name.clone(), u32::from(port))]
                .into_iter()
                .collect(),
            (None, None) => {
                return Err(doc.error(
                    &at.key("ports"),
                    format!(
                        "missing: give the endpoint's port for {} (or write the address as \
                         IP:port when the service has one port)",
                        port_names(ports)
                    ),
                ));
            }
            (None, Some(given)) => {
                let mut out = std::collections::HashMap::new();
                for (name, number) in given {
                    let field = at.key("ports").key(&name);
                    if !ports.iter().any(|p| p.name == name) {
                        return Err(doc.error(
                            &field,
                            format!(
                                "the service has no port named {name:?} (its ports: {})",
                                port_names(ports)
                            ),
                        ));
                    }
                    let number = check_port_number(number).map_err(|m| doc.error(&field, m))?;
                    out.insert(name, number);
                }
                if let Some(missing) = ports.iter().find(|p| !out.contains_key(&p.name)) {
                    return Err(doc.error(
                        &at.key("ports"),
                        format!("no port for the service's port {:?}", missing.name),
                    ));
                }
                out
            }
        };
        let weight = match spec.weight {
            None => 1,
            Some(w) if (0..=i64::from(MAX_WEIGHT)).contains(&w) => w as u32,
            Some(w) => {
                return Err(doc.error(
                    &at.key("weight"),
                    format!("{w} is out of range: must be from 0 to {MAX_WEIGHT}"),
                ));
            }
        };
        for key in spec.labels.keys() {
            check_label_key(key).map_err(|m| doc.error(&at.key("labels").key(key), m))?;
        }
        if weight == 0 {
            // Takes no new requests: left out of what is sent.
            continue;
        }
        weighted = true;
        endpoints.push(v1::ServiceEndpoint {
            address: address.to_string(),
            ports: endpoint_ports,
            weight,
            labels: spec.labels.into_iter().collect(),
            zone: spec.zone.unwrap_or_default(),
            ready: spec.ready.unwrap_or(true),
            target: String::new(),
        });
    }
    if any && !weighted {
        return Err(doc.error(
            path,
            "every endpoint has weight 0, so none could take a request; give at least one a \
             weight above 0 (or remove the endpoints)",
        ));
    }
    Ok(endpoints)
}

fn port_names(ports: &[v1::ServicePort]) -> String {
    ports
        .iter()
        .map(|p| format!("{:?}", p.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An IP address, or (with one service port) an IP address and port.
fn parse_address(text: &str, port_count: usize) -> Result<(IpAddr, Option<u16>), String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok((ip, None));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) if port_count == 1 => {
            check_port_number(i64::from(addr.port()))?;
            Ok((addr.ip(), Some(addr.port())))
        }
        Ok(_) => Err(format!(
            "{text:?} names a port, but the service has {port_count} ports; give the address \
             alone and the ports by name in `ports`"
        )),
        Err(_) => Err(format!(
            "{text:?} is not an IP address (or IP:port when the service has one port); \
             host names are not resolved"
        )),
    }
}

fn check_port_number(port: i64) -> Result<u32, String> {
    if (1..=65_535).contains(&port) {
        Ok(port as u32)
    } else {
        Err(format!("{port} is out of range: must be from 1 to 65535"))
    }
}

/// An RFC 1123 label, as Kubernetes names services and namespaces: 1 to 63 lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
pub fn check_dns_label(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a DNS label: 1 to 63 lowercase letters, digits and '-', starting \
             and ending with a letter or digit"
        ))
    }
}

fn check_label_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 || key.chars().any(char::is_whitespace) {
        return Err(format!(
            "{key:?} is not a label name: 1 to 253 characters without spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<v1::Service, String> {
        parse_service_file(src, Path::new("svc.yaml")).map_err(|e| e.to_string())
    }

    const GOOD: &str = "\
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  ports:
    - {name: http, port: 9080, protocol: grpc}
  endpoints:
    - address: 10.0.0.1
      ports: {http: 18080}
      weight: 3
      labels: {version: v2}
      zone: zone-a
      ready: false
    - address: 10.0.0.2
      ports: {http: 18081}
      weight: 0
    - address: 10.0.0.3:18082
  trafficPolicy: {load_balancer: least_request, retries: {attempts: 2}}
";

    #[test]
    fn a_good_service() {
        let service = parse(GOOD).expect("good");
        assert_eq!(
            (service.namespace.as_str(), service.name.as_str()),
            ("shop", "reviews")
        );
        assert_eq!(service.ports[0].protocol, "http2");
        assert_eq!(
            service.endpoints.len(),
            2,
            "the weight-0 endpoint is left out"
        );
        let first = &service.endpoints[0];
        assert_eq!(first.ports["http"], 18080);
        assert_eq!((first.weight, first.ready), (3, false));
        assert_eq!(first.labels["version"], "v2");
        assert_eq!(first.zone, "zone-a");
        let second = &service.endpoints[1];
        assert_eq!(
            (second.address.as_str(), second.ports["http"]),
            ("10.0.0.3", 18082)
        );
        assert_eq!((second.weight, second.ready), (1, true));
        assert!(
            service.policy_json.contains("least_request"),
            "{}",
            service.policy_json
        );
        assert!(is_service(GOOD));
        assert!(!is_service("metadata: {name: x}\n"));
        assert!(!is_service(": : :"));
    }

    #[test]
    fn namespace_defaults_and_protocol_is_optional() {
        let service =
            parse("kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: http, port: 80}]\n")
                .expect("good");
        assert_eq!(service.namespace, "default");
        assert_eq!(service.ports[0].protocol, "");
        assert!(service.endpoints.is_empty());
    }

    #[test]
    fn bad_services_name_the_line_and_field() {
        let cases: &[(&str, &str)] = &[
            (": :\n  - [", "svc.yaml:"),
            (
                "kind: Service\nmetadata: {name: a}\nspec: {ports: [{name: h, port: 1}], extra: 1}\n",
                "unknown field `extra`",
            ),
            (
                "kind: Service\nmetadata: {name: A_b}\nspec: {ports: [{name: h, port: 1}]}\n",
                "svc.yaml:2:18: metadata.name: \"A_b\" is not a DNS label",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports:\n    - {name: h, port: 1}\n    - {name: h, port: 2}\n",
                "svc.yaml:6:14: spec.ports[1].name: duplicate port name",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports:\n    - {name: h, port: 1}\n    - {name: g, port: 1}\n",
                "spec.ports[1].port: duplicate port 1",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 70000}]\n",
                "spec.ports[0].port: 70000 is out of range",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80, protocol: h3}]\n",
                "spec.ports[0].protocol: unknown protocol",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}]\n  endpoints:\n    - {address: 10.0.0.1, ports: {x: 1}}\n",
                "svc.yaml:6:38: spec.endpoints[0].ports.x: the service has no port named \"x\"",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}, {name: g, port: 81}]\n  endpoints:\n    - {address: 10.0.0.1, ports: {h: 1}}\n",
                "spec.endpoints[0].ports: no port for the service's port \"g\"",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}]\n  endpoints:\n    - {address: 10.0.0.300:80}\n",
                "svc.yaml:6:17: spec.endpoints[0].address: \"10.0.0.300:80\" is not an IP address",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}, {name: g, port: 81}]\n  endpoints:\n    - {address: \"10.0.0.1:80\"}\n",
                "spec.endpoints[0].address: \"10.0.0.1:80\" names a port, but the service has 2 ports",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}]\n  endpoints:\n    - {address: 10.0.0.1:80, weight: 0}\n    - {address: 10.0.0.2:80, weight: 0}\n",
                "svc.yaml:6:5: spec.endpoints: every endpoint has weight 0",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}]\n  endpoints:\n    - {address: 10.0.0.1:80, weight: 10001}\n",
                "spec.endpoints[0].weight: 10001 is out of range",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}]\n  trafficPolicy:\n    retries: {attempts: 99}\n",
                "svc.yaml:6:25: spec.trafficPolicy.retries.attempts:",
            ),
            (
                "kind: Service\nmetadata: {name: a}\nspec:\n  ports: [{name: h, port: 80}]\n  trafficPolicy: {load_balancer: fastest}\n",
                "spec.trafficPolicy.load_balancer",
            ),
        ];
        for (src, expected) in cases {
            let error = parse(src).expect_err(src);
            assert!(
                error.contains(expected),
                "for\n{src}\nexpected {expected:?} in\n{error}"
            );
        }
    }
}
