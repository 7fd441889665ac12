//! Turning the raw file into typed config: parsing values, checking references, and saying
//! where in the file each problem is.
//!
//! Longer than most files here, on purpose: one `Context` method per section of the file, in
//! file order, so that every rule the config obeys and the message that explains it are in one
//! place to read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::raw::*;
use super::*;
use weft_yaml::{Document, FieldPath, format_size, parse_size};

/// One conversion from raw to typed config: knows the file, and finds positions on demand.
pub(super) struct Context<'a> {
    doc: Document<'a>,
    base_dir: &'a Path,
    /// Whether a control plane may supply services that routes name.
    discovery: std::cell::Cell<bool>,
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;

impl<'a> Context<'a> {
    pub(super) fn new(src: &'a str, file: &'a Path) -> Self {
        Self {
            doc: Document::new(src, file),
            base_dir: file.parent().unwrap_or(Path::new("")),
            discovery: std::cell::Cell::new(false),
        }
    }

    /// An error about the value at `field`, located in the source.
    pub(super) fn error(&self, field: &FieldPath, message: impl Into<String>) -> ConfigError {
        self.doc.error(field, message)
    }

    pub(super) fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        self.doc.parse()
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config> {
        let root = FieldPath::root();
        let admin = match raw.admin {
            Some(admin) => Some(AdminConfig {
                address: self.socket_addr(&root.key("admin").key("address"), &admin.address)?,
            }),
            None => None,
        };
        let cache_dir = match raw.cache_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                return Err(self.error(
                    &root.key("cache_dir"),
                    "must not be empty; remove the key to use no cache",
                ));
            }
            Some(dir) => Some(self.base_dir.join(dir)),
            None => None,
        };
        let limits = self.limits(&root.key("limits"), raw.limits)?;
        self.discovery
            .set(raw.control_plane.is_some() && raw.discovery.is_some());
        let discovery = self.discovery_config(
            &root.key("discovery"),
            raw.discovery,
            raw.control_plane.is_some(),
        )?;

        let mut upstreams = Vec::with_capacity(raw.upstreams.len());
        for (i, raw) in raw.upstreams.into_iter().enumerate() {
            let path = root.key("upstreams").index(i);
            let upstream = self.upstream(&path, raw)?;
            if let Some(first) = upstreams
                .iter()
                .position(|u: &UpstreamConfig| u.name == upstream.name)
            {
                return Err(self.error(
                    &path.key("name"),
                    format!(
                        "duplicate upstream name {:?}: upstreams[{first}] has it too",
                        upstream.name
                    ),
                ));
            }
            upstreams.push(upstream);
        }

        if raw.listeners.is_empty() {
            return Err(self.error(
                &root.key("listeners"),
                "at least one listener is required, like `listeners: [{ name: ingress, address: 0.0.0.0:8080, routes: [...] }]`",
            ));
        }
        let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
        for (i, raw) in raw.listeners.into_iter().enumerate() {
            let path = root.key("listeners").index(i);
            let listener = self.listener(&path, raw, &upstreams)?;
            if let Some(first) = listeners.iter().position(|l| l.name == listener.name) {
                return Err(self.error(
                    &path.key("name"),
                    format!(
                        "duplicate listener name {:?}: listeners[{first}] has it too",
                        listener.name
                    ),
                ));
            }
            if let Some(first) = address_taken(listener.address, &listeners) {
                return Err(self.error(
                    &path.key("address"),
                    format!(
                        "address {} is already used by listener {:?} (listeners[{first}])",
                        listener.address, listeners[first].name
                    ),
                ));
            }
            listeners.push(listener);
        }
        if let Some(admin) = &admin
            && let Some(first) = address_taken(admin.address, &listeners)
        {
            return Err(self.error(
                &root.key("admin").key("address"),
                format!(
                    "address {} is already used by listener {:?} (listeners[{first}])",
                    admin.address, listeners[first].name
                ),
            ));
        }

        let identity = match (raw.identity, &raw.control_plane) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(self.error(
                    &root.key("identity"),
                    "needs `control_plane`: weft-controlplane issues workload certificates",
                ));
            }
            (Some(identity), Some(_)) => Some(identity),
        };
        let control_plane = match raw.control_plane {
            Some(cp) => {
                Some(self.control_plane(&root.key("control_plane"), cp, identity.is_some())?)
            }
            None => None,
        };
        let identity = match (identity, &control_plane) {
            (Some(raw), Some(cp)) => Some(self.identity(&root.key("identity"), raw, cp)?),
            _ => None,
        };
        if identity.is_none() {
            let needs = "needs this proxy's workload identity: add `identity: { token_file: ... }` (and a `control_plane` that issues certificates)";
            if let Some(i) = listeners.iter().position(|l| l.tls != InboundTls::Disabled) {
                return Err(self.error(
                    &root.key("listeners").index(i).key("tls").key("mode"),
                    format!("mTLS {needs}"),
                ));
            }
            if discovery
                .as_ref()
                .is_some_and(|d| d.tls != UpstreamTls::Disabled)
            {
                return Err(self.error(
                    &root.key("discovery").key("tls").key("mode"),
                    format!("mesh mTLS {needs}"),
                ));
            }
            if let Some(i) = upstreams
                .iter()
                .position(|u| u.tls != UpstreamTls::Disabled)
            {
                return Err(self.error(
                    &root.key("upstreams").index(i).key("tls").key("mode"),
                    format!("mesh mTLS {needs}"),
                ));
            }
        }

        Ok(Config {
            admin,
            cache_dir,
            limits,
            listeners,
            upstreams,
            control_plane,
            identity,
            discovery,
            source: self.doc.file().to_owned(),
        })
    }

    fn identity(
        &self,
        path: &FieldPath,
        raw: RawIdentity,
        cp: &ControlPlaneConfig,
    ) -> Result<IdentityConfig> {
        let service_account = raw
            .service_account
            .or_else(|| {
                std::env::var("WEFT_SERVICE_ACCOUNT")
                    .ok()
                    .filter(|v| !v.is_empty())
            })
            .unwrap_or_else(|| "default".to_owned());
        if let Err(e) = weft_identity::check_name(&service_account, "service account") {
            return Err(self.error(&path.key("service_account"), e.to_string()));
        }
        if let Err(e) = weft_identity::check_name(&cp.namespace, "namespace") {
            return Err(self.error(
                &FieldPath::root().key("control_plane").key("namespace"),
                format!("{e} (it is the namespace of this proxy's workload identity)"),
            ));
        }
        if raw.token_file.as_os_str().is_empty() {
            return Err(self.error(&path.key("token_file"), "must not be empty"));
        }
        Ok(IdentityConfig {
            namespace: cp.namespace.clone(),
            service_account,
            token_file: self.base_dir.join(raw.token_file),
        })
    }

    fn control_plane(
        &self,
        path: &FieldPath,
        raw: RawControlPlane,
        has_identity: bool,
    ) -> Result<ControlPlaneConfig> {
        let address = raw.address.trim().to_owned();
        let https = address.starts_with("https://");
        if !https && !address.starts_with("http://") {
            return Err(self.error(
                &path.key("address"),
                format!(
                    "invalid address {address:?}: expected http://host:port or https://host:port"
                ),
            ));
        }
        if address.parse::<http::Uri>().is_err() {
            return Err(self.error(
                &path.key("address"),
                format!("invalid address {address:?}: not a URI"),
            ));
        }
        let from_env = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        };
        let name = match raw.name.or_else(|| from_env(&["POD_NAME", "HOSTNAME"])) {
            Some(name) => self.name(&path.key("name"), name)?,
            None => {
                return Err(self.error(
                    path,
                    "`name` is required: neither POD_NAME nor HOSTNAME is set",
                ));
            }
        };
        let namespace = raw
            .namespace
            .or_else(|| from_env(&["POD_NAMESPACE"]))
            .unwrap_or_else(|| "default".to_owned());
        let namespace = self.name(&path.key("namespace"), namespace)?;
        let tls = match raw.tls {
            None => None,
            Some(t) => {
                let client_cert = match (t.cert, t.key) {
                    (Some(cert), Some(key)) => {
                        Some((self.base_dir.join(cert), self.base_dir.join(key)))
                    }
                    (None, None) if has_identity => None,
                    (None, None) => {
                        return Err(self.error(
                            &path.key("tls"),
                            "needs `cert` and `key` (this proxy's client certificate), or an \
                             `identity` whose workload certificate is used instead",
                        ));
                    }
                    (Some(_), None) => {
                        return Err(self.error(&path.key("tls"), "`cert` needs `key`"));
                    }
                    (None, Some(_)) => {
                        return Err(self.error(&path.key("tls"), "`key` needs `cert`"));
                    }
                };
                Some(ClientTls {
                    ca: self.base_dir.join(t.ca),
                    client_cert,
                })
            }
        };
        if https && tls.is_none() {
            return Err(self.error(
                &path.key("address"),
                "https:// needs `tls: { ca, cert, key }` (the control plane requires a client certificate)",
            ));
        }
        if !https && tls.is_some() {
            return Err(self.error(
                &path.key("tls"),
                "`tls` is set but the address is http://; use https://",
            ));
        }
        Ok(ControlPlaneConfig {
            address,
            name,
            namespace,
            labels: raw.labels,
            state_dir: self
                .base_dir
                .join(raw.state_dir.unwrap_or_else(|| PathBuf::from("weft-state"))),
            tls,
        })
    }

    fn limits(&self, path: &FieldPath, raw: RawLimits) -> Result<Limits> {
        let defaults = Limits::default();
        let size = |key: &str, value: Option<RawSize>, default: u64| match value {
            None => Ok(default),
            Some(value) => self.size(&path.key(key), &value, 1, u64::MAX),
        };
        // A day is far past any sane connection timeout and keeps `Instant` arithmetic safe.
        let timeout = |key: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) => {
                self.duration(&path.key(key), &text, Some(Duration::from_secs(24 * 3600)))
            }
        };
        Ok(Limits {
            max_request_header_bytes: self.usize(
                &path.key("max_request_header_bytes"),
                size(
                    "max_request_header_bytes",
                    raw.max_request_header_bytes,
                    defaults.max_request_header_bytes as u64,
                )?,
            )?,
            max_request_body_bytes: size(
                "max_request_body_bytes",
                raw.max_request_body_bytes,
                defaults.max_request_body_bytes,
            )?,
            max_buffered_body_bytes: self.usize(
                &path.key("max_buffered_body_bytes"),
                size(
                    "max_buffered_body_bytes",
                    raw.max_buffered_body_bytes,
                    defaults.max_buffered_body_bytes as u64,
                )?,
            )?,
            max_connections: self.count(
                &path.key("max_connections"),
                raw.max_connections,
                defaults.max_connections,
                1..=1_000_000,
            )?,
            request_head_timeout: timeout(
                "request_head_timeout",
                raw.request_head_timeout,
                defaults.request_head_timeout,
            )?,
            idle_timeout: timeout("idle_timeout", raw.idle_timeout, defaults.idle_timeout)?,
            http2_max_concurrent_streams: self.count(
                &path.key("http2_max_concurrent_streams"),
                raw.http2_max_concurrent_streams,
                defaults.http2_max_concurrent_streams,
                1..=65_536,
            )?,
            http2_keepalive_interval: match raw.http2_keepalive_interval.as_deref() {
                None => defaults.http2_keepalive_interval,
                Some("off") => None,
                Some(text) => Some(self.duration(
                    &path.key("http2_keepalive_interval"),
                    text,
                    Some(Duration::from_secs(24 * 3600)),
                )?),
            },
            http2_keepalive_timeout: timeout(
                "http2_keepalive_timeout",
                raw.http2_keepalive_timeout,
                defaults.http2_keepalive_timeout,
            )?,
            http2_max_premature_resets: self.count(
                &path.key("http2_max_premature_resets"),
                raw.http2_max_premature_resets,
                defaults.http2_max_premature_resets,
                1..=1_000_000,
            )?,
            max_concurrent_calls_per_filter: self.count(
                &path.key("max_concurrent_calls_per_filter"),
                raw.max_concurrent_calls_per_filter,
                defaults.max_concurrent_calls_per_filter,
                1..=1_000_000,
            )?,
            max_active_delays_per_filter: self.count(
                &path.key("max_active_delays_per_filter"),
                raw.max_active_delays_per_filter,
                defaults.max_active_delays_per_filter,
                0..=1_000_000,
            )?,
            max_outbound_calls_per_filter: self.count(
                &path.key("max_outbound_calls_per_filter"),
                raw.max_outbound_calls_per_filter,
                defaults.max_outbound_calls_per_filter,
                0..=1_000_000,
            )?,
        })
    }

    /// A whole number in `range`, or `default` when absent.
    fn count<T: TryFrom<u64> + Copy>(
        &self,
        path: &FieldPath,
        raw: Option<u64>,
        default: T,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<T> {
        let Some(value) = raw else {
            return Ok(default);
        };
        if !range.contains(&value) {
            return Err(self.error(
                path,
                format!(
                    "invalid value {value}: must be between {} and {}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        T::try_from(value)
            .map_err(|_| self.error(path, format!("{value} is too large for this platform")))
    }

    fn listener(
        &self,
        path: &FieldPath,
        raw: RawListener,
        upstreams: &[UpstreamConfig],
    ) -> Result<ListenerConfig> {
        let name = self.name(&path.key("name"), raw.name)?;
        let address = self.socket_addr(&path.key("address"), &raw.address)?;

        let mut filters: Vec<FilterConfig> = Vec::with_capacity(raw.filters.len());
        for (i, raw) in raw.filters.into_iter().enumerate() {
            let path = path.key("filters").index(i);
            let filter = self.filter(&path, raw)?;
            if let Some(first) = filters.iter().position(|f| f.name == filter.name) {
                return Err(self.error(
                    &path.key("name"),
                    format!(
                        "duplicate filter name {:?}: filters[{first}] of this listener has it too",
                        filter.name
                    ),
                ));
            }
            filters.push(filter);
        }

        if raw.routes.is_empty() {
            return Err(self.error(
                &path.key("routes"),
                "at least one route is required, like `routes: [{ name: default, upstream: app }]`",
            ));
        }
        let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.routes.len());
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let path = path.key("routes").index(i);
            let route = self.route(&path, raw, &filters, upstreams)?;
            if let Some(first) = routes.iter().position(|r| r.name == route.name) {
                return Err(self.error(
                    &path.key("name"),
                    format!(
                        "duplicate route name {:?}: routes[{first}] of this listener has it too",
                        route.name
                    ),
                ));
            }
            routes.push(route);
        }

        let defaults = PathNormalization::default();
        let paths = PathNormalization {
            enabled: raw.paths.normalize.unwrap_or(defaults.enabled),
            merge_slashes: raw.paths.merge_slashes.unwrap_or(defaults.merge_slashes),
            escaped_slashes: raw
                .paths
                .escaped_slashes
                .unwrap_or(defaults.escaped_slashes),
        };
        let peer_identity_header = match raw.peer_identity_header {
            None => None,
            Some(name) => {
                let path = path.key("peer_identity_header");
                let header = http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| self.error(&path, format!("invalid header name {name:?}")))?;
                // The managed headers include every hop-by-hop one and `host`.
                if weft_text::is_managed_header(header.as_str()) {
                    return Err(self.error(
                        &path,
                        format!("{name:?} is a header the proxy manages; pick another, like x-weft-peer-identity"),
                    ));
                }
                Some(header)
            }
        };
        Ok(ListenerConfig {
            name,
            address,
            direction: raw.direction,
            paths,
            tls: raw.tls.map_or(InboundTls::Disabled, |t| t.mode),
            peer_identity_header,
            filters,
            routes,
        })
    }

    fn filter(&self, path: &FieldPath, raw: RawFilter) -> Result<FilterConfig> {
        let name = self.name(&path.key("name"), raw.name)?;
        let module = self.base_dir.join(&raw.module);
        match std::fs::metadata(&module) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(self.error(
                    &path.key("module"),
                    format!(
                        "filter {name:?}: module is not a file: {}",
                        module.display()
                    ),
                ));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.error(
                    &path.key("module"),
                    format!(
                        "filter {name:?}: module file not found: {}",
                        module.display()
                    ),
                ));
            }
            Err(err) => {
                return Err(self.error(
                    &path.key("module"),
                    format!(
                        "filter {name:?}: cannot read module file {}: {err}",
                        module.display()
                    ),
                ));
            }
        }
        let time_budget = match raw.time_budget {
            None => filter_limits::DEFAULT_TIME_BUDGET,
            Some(text) => self.duration(
                &path.key("time_budget"),
                &text,
                Some(filter_limits::MAX_TIME_BUDGET),
            )?,
        };
        let max_memory_bytes = match raw.max_memory {
            None => filter_limits::DEFAULT_MAX_MEMORY,
            Some(size) => self.size(
                &path.key("max_memory"),
                &size,
                *filter_limits::MAX_MEMORY_RANGE.start(),
                *filter_limits::MAX_MEMORY_RANGE.end(),
            )?,
        };
        Ok(FilterConfig {
            name,
            module,
            config: raw.config.unwrap_or(serde_json::Value::Null),
            failure_policy: raw.failure_policy,
            time_budget,
            isolation: raw.isolation,
            max_memory_bytes: self.usize(&path.key("max_memory"), max_memory_bytes)?,
        })
    }

    fn route(
        &self,
        path: &FieldPath,
        raw: RawRoute,
        filters: &[FilterConfig],
        upstreams: &[UpstreamConfig],
    ) -> Result<RouteConfig> {
        let name = self.name(&path.key("name"), raw.name)?;
        let matcher = self.route_match(&path.key("match"), raw.matcher)?;
        let target = match (raw.upstream, raw.split, raw.by_authority) {
            (Some(upstream), None, None | Some(false)) => {
                RouteTarget::Upstream(self.upstream_ref(
                    &path.key("upstream"),
                    UpstreamRef::parse(&upstream),
                    upstreams,
                )?)
            }
            (None, Some(split), None | Some(false)) => {
                self.split(&path.key("split"), split, upstreams)?
            }
            (None, None, Some(true)) => {
                if !self.discovery.get() {
                    return Err(self.error(
                        &path.key("by_authority"),
                        "needs `discovery` (and `control_plane`): services are discovered \
                         from the control plane",
                    ));
                }
                RouteTarget::ByAuthority
            }
            (None, None, Some(false)) => {
                return Err(self.error(
                    &path.key("by_authority"),
                    "`by_authority: false` sends nowhere: name an `upstream` instead",
                ));
            }
            _ => {
                return Err(self.error(
                    path,
                    "set exactly one of `upstream`, `split` or `by_authority: true`",
                ));
            }
        };
        let timeout = match raw.timeout {
            None => None,
            Some(text) => Some(self.duration(&path.key("timeout"), &text, None)?),
        };
        let retries = match raw.retries {
            None => None,
            Some(raw) => Some(weft_traffic::policy::check_retries(
                &self.doc,
                &path.key("retries"),
                raw,
            )?),
        };
        let mut overrides = BTreeMap::new();
        for (filter, raw) in raw.filters {
            let path = path.key("filters").key(&filter);
            if !filters.iter().any(|f| f.name == filter) {
                let message = if filters.is_empty() {
                    format!("unknown filter {filter:?}: this listener has no filters to override")
                } else {
                    format!(
                        "unknown filter {filter:?}: overrides must name a filter of this listener (filters: {})",
                        names(filters.iter().map(|f| &f.name))
                    )
                };
                // The key is what is wrong, not its value.
                let mark = self.doc.locator().key(&path);
                return Err(self.doc.error_at(mark, &path, message));
            }
            let value = match (raw.disabled, raw.config) {
                (Some(true), None) => FilterOverride::Disabled,
                (None, Some(config)) => FilterOverride::Config(config),
                (Some(false), None) => {
                    return Err(self.error(
                        &path.key("disabled"),
                        "`disabled: false` changes nothing: remove this override, or set `config` to give the filter another configuration",
                    ));
                }
                (None, None) => {
                    return Err(self.error(&path, "set either `disabled: true` or `config`"));
                }
                (Some(_), Some(_)) => {
                    return Err(
                        self.error(&path, "set either `disabled: true` or `config`, not both")
                    );
                }
            };
            overrides.insert(filter, value);
        }
        Ok(RouteConfig {
            name,
            matcher,
            target,
            timeout,
            retries,
            filters: overrides,
        })
    }

    /// An upstream a route names: a configured one (and then its subset must exist), or,
    /// with `discovery`, a service the control plane may send.
    fn upstream_ref(
        &self,
        path: &FieldPath,
        target: UpstreamRef,
        upstreams: &[UpstreamConfig],
    ) -> Result<UpstreamRef> {
        let Some(upstream) = upstreams.iter().find(|u| u.name == target.name) else {
            if self.discovery.get() && !target.name.is_empty() {
                // A discovered service, known once the control plane sends it.
                return Ok(target);
            }
            let message = if upstreams.is_empty() {
                format!(
                    "unknown upstream {:?}: no upstreams are defined; add one under `upstreams`",
                    target.name
                )
            } else {
                format!(
                    "unknown upstream {:?} (known: {})",
                    target.name,
                    names(upstreams.iter().map(|u| &u.name))
                )
            };
            return Err(self.error(path, message));
        };
        if let Some(subset) = &target.subset
            && !upstream.policy.subsets.contains_key(subset)
        {
            let message = if upstream.policy.subsets.is_empty() {
                format!(
                    "unknown subset {subset:?}: upstream {:?} defines no `subsets`",
                    upstream.name
                )
            } else {
                format!(
                    "unknown subset {subset:?} of upstream {:?} (known: {})",
                    upstream.name,
                    names(upstream.policy.subsets.keys())
                )
            };
            return Err(self.error(path, message));
        }
        Ok(target)
    }

    fn split(
        &self,
        path: &FieldPath,
        raw: Vec<RawSplit>,
        upstreams: &[UpstreamConfig],
    ) -> Result<RouteTarget> {
        if raw.is_empty() {
            return Err(self.error(path, "a split needs at least one entry"));
        }
        let mut split = Vec::with_capacity(raw.len());
        for (i, entry) in raw.into_iter().enumerate() {
            let path = path.index(i);
            let mut target = UpstreamRef::parse(&entry.upstream);
            if let Some(subset) = entry.subset {
                if target.subset.is_some() {
                    return Err(self.error(
                        &path.key("subset"),
                        "the subset is given twice: in `upstream` (after @) and in `subset`",
                    ));
                }
                target.subset = Some(subset);
            }
            let target = self.upstream_ref(&path.key("upstream"), target, upstreams)?;
            if !(0..=10_000).contains(&entry.weight) {
                return Err(self.error(
                    &path.key("weight"),
                    format!("{} is out of range: must be from 0 to 10000", entry.weight),
                ));
            }
            split.push((target, u32::try_from(entry.weight).unwrap_or(0)));
        }
        if split.iter().all(|(_, w)| *w == 0) {
            return Err(self.error(
                path,
                "every weight is 0: at least one entry must get requests",
            ));
        }
        Ok(RouteTarget::Split(split))
    }

    fn discovery_config(
        &self,
        path: &FieldPath,
        raw: Option<RawDiscovery>,
        control_plane: bool,
    ) -> Result<Option<DiscoveryConfig>> {
        let mut config = DiscoveryConfig::default();
        let Some(raw) = raw else {
            return Ok(None);
        };
        if !control_plane {
            return Err(self.error(
                path,
                "needs `control_plane`: services are discovered from it",
            ));
        }
        if let Some(namespaces) = raw.namespaces {
            for (i, ns) in namespaces.iter().enumerate() {
                if !weft_traffic::policy::is_subset_name(ns) || ns.contains(['.', '_']) {
                    return Err(self.error(
                        &path.key("namespaces").index(i),
                        format!("{ns:?} is not a namespace name"),
                    ));
                }
            }
            config.namespaces = namespaces;
        }
        if let Some(domain) = raw.cluster_domain {
            let domain = domain.trim_matches('.').to_ascii_lowercase();
            if domain.is_empty() || check_endpoint(&format!("{domain}:1")).is_err() {
                return Err(self.error(
                    &path.key("cluster_domain"),
                    format!("{domain:?} is not a DNS domain"),
                ));
            }
            config.cluster_domain = domain;
        }
        if let Some(tls) = raw.tls {
            config.tls = match (tls.mode, tls.identity) {
                (_, Some(_)) => {
                    return Err(self.error(
                        &path.key("tls").key("identity"),
                        "discovered services have many identities: `identity` cannot be pinned here",
                    ));
                }
                (RawUpstreamTlsMode::Mesh, None) => UpstreamTls::Mesh { identity: None },
                (RawUpstreamTlsMode::Disabled, None) => UpstreamTls::Disabled,
            };
        }
        Ok(Some(config))
    }

    fn route_match(&self, path: &FieldPath, raw: RawMatch) -> Result<RouteMatch> {
        let path_match = match raw.path {
            None => PathMatch::Prefix("/".to_owned()),
            Some(RawPathMatch {
                exact: Some(exact),
                prefix: None,
            }) => PathMatch::Exact(self.http_path(&path.key("path").key("exact"), exact)?),
            Some(RawPathMatch {
                exact: None,
                prefix: Some(prefix),
            }) => PathMatch::Prefix(self.http_path(&path.key("path").key("prefix"), prefix)?),
            Some(_) => {
                return Err(self.error(
                    &path.key("path"),
                    "set exactly one of `exact` or `prefix`, like `path: { prefix: /api }`",
                ));
            }
        };
        let mut headers = Vec::with_capacity(raw.headers.len());
        for (i, raw) in raw.headers.into_iter().enumerate() {
            let path = path.key("headers").index(i);
            let name = http::HeaderName::from_bytes(raw.name.as_bytes()).map_err(|_| {
                self.error(
                    &path.key("name"),
                    format!(
                        "invalid header name {:?}: use letters, digits and '-', like x-env",
                        raw.name
                    ),
                )
            })?;
            let rule = match (raw.exact, raw.prefix, raw.present) {
                (Some(exact), None, None) => {
                    HeaderRule::Exact(self.header_value(&path.key("exact"), exact)?)
                }
                (None, Some(prefix), None) => {
                    HeaderRule::Prefix(self.header_value(&path.key("prefix"), prefix)?)
                }
                (None, None, Some(true)) => HeaderRule::Present,
                (None, None, Some(false)) => {
                    return Err(self.error(
                        &path.key("present"),
                        "only `present: true` is supported; to match any request, remove this header rule",
                    ));
                }
                _ => {
                    return Err(self.error(
                        &path,
                        "set exactly one of `exact`, `prefix` or `present: true`, like `{ name: x-env, exact: canary }`",
                    ));
                }
            };
            headers.push(HeaderMatch { name, rule });
        }
        Ok(RouteMatch {
            path: path_match,
            headers,
        })
    }

    fn upstream(&self, path: &FieldPath, raw: RawUpstream) -> Result<UpstreamConfig> {
        let name = self.name(&path.key("name"), raw.name)?;
        if raw.endpoints.is_empty() {
            return Err(self.error(
                &path.key("endpoints"),
                "at least one endpoint is required, like `endpoints: [\"127.0.0.1:8080\"]`",
            ));
        }
        let mut endpoints = Vec::with_capacity(raw.endpoints.len());
        for (i, endpoint) in raw.endpoints.into_iter().enumerate() {
            let at = path.key("endpoints").index(i);
            let (address, weight, labels, address_at) = match endpoint {
                RawEndpoint::Address(address) => (address, None, BTreeMap::new(), at.clone()),
                RawEndpoint::Detailed(d) => (d.address, d.weight, d.labels, at.key("address")),
            };
            if let Err(problem) = check_endpoint(&address) {
                return Err(self.error(
                    &address_at,
                    format!("invalid endpoint {address:?}: {problem}; expected host:port, like 10.0.0.5:8080, app.internal:80 or [fd00::5]:8080"),
                ));
            }
            let weight = match weight {
                None => 1,
                Some(w) if (0..=10_000).contains(&w) => u32::try_from(w).unwrap_or(1),
                Some(w) => {
                    return Err(self.error(
                        &at.key("weight"),
                        format!("{w} is out of range: must be from 0 to 10000"),
                    ));
                }
            };
            endpoints.push(EndpointConfig {
                address,
                weight,
                labels,
                ready: true,
            });
        }
        if endpoints.iter().all(|e| e.weight == 0) {
            return Err(self.error(
                &path.key("endpoints"),
                "every endpoint has weight 0: at least one must get requests",
            ));
        }
        // Weight 0: configured, but no new requests (draining).
        endpoints.retain(|e| e.weight > 0);
        let policy = weft_traffic::policy::check(
            &self.doc,
            path,
            weft_traffic::policy::RawPolicy {
                connect_timeout: raw.connect_timeout,
                timeout: raw.timeout,
                idle_timeout: raw.idle_timeout,
                load_balancer: raw.load_balancer,
                retries: raw.retries,
                circuit_breaker: raw.circuit_breaker,
                outlier_detection: raw.outlier_detection,
                health_check: raw.health_check,
                subsets: raw.subsets,
            },
        )?;
        let connect_timeout = policy.connect_timeout.unwrap_or(Duration::from_secs(1));
        let timeout = policy.timeout.unwrap_or(Duration::from_secs(30));
        let idle_timeout = policy.idle_timeout.unwrap_or(Duration::from_secs(90));
        let tls = match raw.tls {
            None => UpstreamTls::Disabled,
            Some(RawUpstreamTls {
                mode: RawUpstreamTlsMode::Disabled,
                identity: Some(_),
            }) => {
                return Err(self.error(
                    &path.key("tls").key("identity"),
                    "`identity` needs `mode: mesh`",
                ));
            }
            Some(RawUpstreamTls {
                mode: RawUpstreamTlsMode::Disabled,
                identity: None,
            }) => UpstreamTls::Disabled,
            Some(RawUpstreamTls {
                mode: RawUpstreamTlsMode::Mesh,
                identity,
            }) => UpstreamTls::Mesh {
                identity: match identity {
                    None => None,
                    Some(id) => Some(weft_identity::SpiffeId::parse(id.trim()).map_err(|e| {
                        self.error(&path.key("tls").key("identity"), e.to_string())
                    })?),
                },
            },
        };
        Ok(UpstreamConfig {
            name,
            endpoints,
            protocol: raw.protocol,
            connect_timeout,
            timeout,
            idle_timeout,
            tls,
            policy,
        })
    }

    /// Names appear in metrics and logs, so they are kept to characters that need no quoting.
    fn name(&self, path: &FieldPath, name: String) -> Result<String> {
        if name.is_empty() {
            return Err(self.error(path, "must not be empty"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(self.error(
                path,
                format!("invalid name {name:?}: {bad:?} is not allowed; use only letters, digits, '_', '.' and '-'"),
            ));
        }
        Ok(name)
    }

    fn socket_addr(&self, path: &FieldPath, text: &str) -> Result<SocketAddr> {
        text.trim().parse().map_err(|_| {
            self.error(
                path,
                format!("invalid address {text:?}: expected IP:port, like 0.0.0.0:8080 or [::1]:8080 (host names are not allowed here)"),
            )
        })
    }

    /// `max` is inclusive; every duration must be more than zero.
    fn duration(&self, path: &FieldPath, text: &str, max: Option<Duration>) -> Result<Duration> {
        let duration = weft_yaml::parse_duration(text).map_err(|_| {
            self.error(
                path,
                format!(
                    "invalid duration {text:?}: expected a number followed by a unit, like 50ms"
                ),
            )
        })?;
        if duration.is_zero() {
            return Err(self.error(
                path,
                format!("invalid duration {text:?}: must be more than 0"),
            ));
        }
        if let Some(max) = max.filter(|max| duration > *max) {
            return Err(self.error(
                path,
                format!(
                    "invalid duration {text:?}: must be at most {}",
                    humantime::format_duration(max)
                ),
            ));
        }
        Ok(duration)
    }

    /// `min` and `max` are inclusive.
    fn size(&self, path: &FieldPath, raw: &RawSize, min: u64, max: u64) -> Result<u64> {
        let text = &raw.0;
        let bytes = parse_size(text)
            .map_err(|problem| self.error(path, format!("invalid size {text:?}: {problem}")))?;
        if bytes < min || bytes > max {
            let range = if max == u64::MAX {
                format!("at least {}", format_size(min))
            } else {
                format!("between {} and {}", format_size(min), format_size(max))
            };
            return Err(self.error(path, format!("invalid size {text:?}: must be {range}")));
        }
        Ok(bytes)
    }

    fn usize(&self, path: &FieldPath, bytes: u64) -> Result<usize> {
        usize::try_from(bytes).map_err(|_| {
            self.error(
                path,
                format!("{bytes} bytes is too large for this platform"),
            )
        })
    }

    fn http_path(&self, path: &FieldPath, value: String) -> Result<String> {
        if !value.starts_with('/') {
            return Err(self.error(
                path,
                format!(
                    "invalid path {value:?}: must start with '/', like /{}",
                    value.trim_start_matches('/')
                ),
            ));
        }
        Ok(value)
    }

    fn header_value(&self, path: &FieldPath, value: String) -> Result<String> {
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(self.error(
                path,
                format!("invalid header value {value:?}: a request header can never contain it (control characters or non-ASCII)"),
            ));
        }
        Ok(value)
    }
}

/// `host:port`, where host is a DNS name, an IPv4 address or a bracketed IPv6 address.
fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    if endpoint.contains("://") {
        return Err("leave out the scheme");
    }
    if endpoint.contains('/') {
        return Err("leave out the path");
    }
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err("the port is missing");
    };
    match port.parse::<u16>() {
        Ok(0) => return Err("port 0 cannot be connected to"),
        Ok(_) => {}
        Err(_) if port.is_empty() => return Err("the port is missing"),
        Err(_) => return Err("the port is not a number from 1 to 65535"),
    }
    if let Some(ipv6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match ipv6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => Err("the address in brackets is not an IPv6 address"),
        };
    }
    if host.contains(':') {
        return Err("put an IPv6 address in brackets");
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if host.is_empty() || host.len() > 253 || !host.trim_end_matches('.').split('.').all(label_ok) {
        return Err("the host is not a valid name or IP address");
    }
    Ok(())
}

/// The listener already bound to `address`. Port 0 asks the system for a free port, so it
/// never clashes.
fn address_taken(address: SocketAddr, listeners: &[ListenerConfig]) -> Option<usize> {
    listeners
        .iter()
        .position(|l| address.port() != 0 && l.address == address)
}

fn names<'n>(names: impl Iterator<Item = &'n String>) -> String {
    names.map(String::as_str).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_endpoints() {
        for ok in [
            "127.0.0.1:80",
            "app:8080",
            "app.internal.:443",
            "my_svc.ns.svc.cluster.local:9000",
            "[::1]:1",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
    }
}
