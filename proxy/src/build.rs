//! Building route tables from the config file and the control plane's filters.
//!
//! A [`Builder`] lives as long as the proxy. Every reload builds complete new tables off the
//! request path; filters and modules that did not change are reused, not configured again,
//! so their warm instances carry over and an unchanged filter never sees `configure` twice.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::chain::{Chain, Link, RequestMatch};
use crate::config::{
    Config, Direction, FilterConfig, FilterOverride, ListenerConfig, UpstreamConfig,
};
use crate::config::{RouteTarget, UpstreamRef};
use crate::lifecycle::Error;
use crate::mesh::Handshakes;
use crate::metrics::Metrics;
use crate::route::{Choice, Route, Target};
use crate::upstream::Upstream;
use weft_identity::tls::MeshTls;
use weft_runtime::health::FilterCaps;
use weft_runtime::{
    FilterKey, FilterSpec, LoadError, LoadedFilter, Module, Runtime, RuntimeOptions, cache,
};
use weft_traffic::budget::Budget;

/// One listener's routes, swapped whole on a reload. A request keeps the table it started
/// with until it ends.
#[derive(Debug)]
pub(crate) struct RouteTable {
    pub(crate) routes: Vec<Route>,
    /// Every upstream, for filters that choose one by name.
    pub(crate) upstreams: Arc<HashMap<Arc<str>, Arc<Upstream>>>,
    /// Filters configured: the listener's chain, route overrides and dynamic filters.
    pub(crate) filters: usize,
}

/// A filter from the control plane, configured and ready to link into chains.
#[derive(Debug, Clone)]
pub(crate) struct DynamicFilter {
    pub(crate) filter: Arc<LoadedFilter>,
    /// Listeners of this direction only; none: every listener.
    pub(crate) direction: Option<Direction>,
    /// Routes with these names only; empty: every route.
    pub(crate) routes: Vec<String>,
    /// Requests with these paths and methods only.
    pub(crate) when: Option<Arc<RequestMatch>>,
    key: FilterKey,
}

impl DynamicFilter {
    fn applies_to(&self, listener: &ListenerConfig, route: &str) -> bool {
        self.direction.is_none_or(|d| d == listener.direction)
            && (self.routes.is_empty() || self.routes.iter().any(|r| r == route))
    }
}

/// Compiles modules and configures filters, remembering the current generation's.
pub(crate) struct Builder {
    runtime: Runtime,
    metrics: Arc<Metrics>,
    /// Compiled modules by sha256 digest.
    modules: HashMap<String, Arc<Module>>,
    /// Configured filters of the serving generation, plus any configured since.
    filters: HashMap<FilterKey, Arc<LoadedFilter>>,
    /// Upstreams by name with the config they were built from, so a reload that keeps an
    /// upstream keeps its connection pools.
    upstreams: HashMap<String, (UpstreamConfig, Arc<Upstream>)>,
    /// The proxy's mTLS, for upstreams with `tls: { mode: mesh }`.
    mesh: Arc<MeshTls>,
    handshakes: Handshakes,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("modules", &self.modules.len())
            .field("filters", &self.filters.len())
            .finish_non_exhaustive()
    }
}

/// What a build used, so [`Builder::commit`] can let go of the rest.
#[derive(Debug, Default)]
pub(crate) struct Used {
    filters: HashSet<FilterKey>,
    modules: HashSet<String>,
}

impl Builder {
    pub(crate) fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        mesh: Arc<MeshTls>,
    ) -> Result<Self, Error> {
        let defaults = RuntimeOptions::default();
        let options = RuntimeOptions {
            cache_dir: config.cache_dir.clone().or(defaults.cache_dir.clone()),
            caps: FilterCaps {
                max_concurrent_calls: config.limits.max_concurrent_calls_per_filter,
                max_active_delays: config.limits.max_active_delays_per_filter,
                max_outbound_calls: config.limits.max_outbound_calls_per_filter,
            },
            ..defaults
        };
        let runtime = Runtime::new(options, metrics.filters().clone()).map_err(Error::Runtime)?;
        Ok(Self {
            runtime,
            handshakes: Handshakes::new(&metrics, "outbound"),
            mesh,
            metrics,
            modules: HashMap::new(),
            filters: HashMap::new(),
            upstreams: HashMap::new(),
        })
    }

    /// The module with this digest, if compiled already.
    pub(crate) fn cached_module(&self, digest: &str) -> Option<Arc<Module>> {
        self.modules.get(digest).cloned()
    }

    /// Compile a module whose bytes were verified against `digest`; `label` names it in
    /// messages.
    pub(crate) fn module_from_bytes(
        &mut self,
        digest: &str,
        bytes: &[u8],
        label: &Path,
    ) -> Result<Arc<Module>, LoadError> {
        if let Some(module) = self.modules.get(digest) {
            return Ok(module.clone());
        }
        let module = self.runtime.module_from_bytes(label, bytes)?;
        self.modules.insert(digest.to_owned(), module.clone());
        Ok(module)
    }

    /// Read a module file; compile it unless a module with the same bytes is compiled.
    fn module_file(&mut self, path: &Path) -> Result<Arc<Module>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let digest = cache::digest(&bytes);
        self.module_from_bytes(&digest, &bytes, path)
    }

    /// Configure a control plane filter (or reuse the identical one configured before).
    pub(crate) fn dynamic(
        &mut self,
        params: FilterSpec<'_>,
        direction: Option<Direction>,
        routes: Vec<String>,
        when: Option<Arc<RequestMatch>>,
        used: &mut Used,
    ) -> Result<DynamicFilter, LoadError> {
        let (filter, key) = self.configure(params, used)?;
        Ok(DynamicFilter {
            filter,
            direction,
            routes,
            when,
            key,
        })
    }

    /// Configure a filter, or reuse the identical one configured before.
    fn filter(
        &mut self,
        params: FilterSpec<'_>,
        used: &mut Used,
    ) -> Result<Arc<LoadedFilter>, LoadError> {
        self.configure(params, used).map(|(filter, _)| filter)
    }

    fn configure(
        &mut self,
        params: FilterSpec<'_>,
        used: &mut Used,
    ) -> Result<(Arc<LoadedFilter>, FilterKey), LoadError> {
        let key = params.key();
        used.modules.insert(key.digest().to_owned());
        if let Some(filter) = self.filters.get(&key) {
            used.filters.insert(key.clone());
            return Ok((filter.clone(), key));
        }
        let filter = self.runtime.load_filter(params)?;
        self.filters.insert(key.clone(), filter.clone());
        used.filters.insert(key.clone());
        Ok((filter, key))
    }

    /// Build every listener's table, in the config's listener order.
    pub(crate) fn tables(
        &mut self,
        config: &Config,
        dynamic: &[DynamicFilter],
        used: &mut Used,
    ) -> Result<Vec<RouteTable>, Error> {
        for f in dynamic {
            used.modules.insert(f.key.digest().to_owned());
            used.filters.insert(f.key.clone());
        }
        let upstreams = Arc::new(self.upstreams(&config.upstreams));
        config
            .listeners
            .iter()
            .map(|l| self.listener(l, dynamic, &upstreams, used))
            .collect()
    }

    /// Keep only what the serving generation uses.
    pub(crate) fn commit(&mut self, used: Used) {
        self.filters.retain(|key, _| used.filters.contains(key));
        self.modules
            .retain(|digest, _| used.modules.contains(digest));
    }

    fn upstreams(&mut self, configs: &[UpstreamConfig]) -> HashMap<Arc<str>, Arc<Upstream>> {
        let mut next = HashMap::with_capacity(configs.len());
        for config in configs {
            let upstream = match self.upstreams.get(&config.name) {
                Some((old, upstream)) if old == config => upstream.clone(),
                // Only the endpoints changed: take them in place, keeping pools and state.
                Some((old, upstream)) if Upstream::same_but_endpoints(old, config) => {
                    upstream.set_endpoints(&config.endpoints);
                    upstream.clone()
                }
                _ => Upstream::new(
                    config,
                    &self.mesh,
                    &self.handshakes,
                    self.metrics.upstream(&config.name),
                ),
            };
            next.insert(config.name.clone(), (config.clone(), upstream));
        }
        self.upstreams = next;
        self.upstreams
            .values()
            .map(|(_, u)| (u.name.clone(), u.clone()))
            .collect()
    }

    fn listener(
        &mut self,
        config: &ListenerConfig,
        dynamic: &[DynamicFilter],
        upstreams: &Arc<HashMap<Arc<str>, Arc<Upstream>>>,
        used: &mut Used,
    ) -> Result<RouteTable, Error> {
        let filter_error = |filter: &str, module: &Path, source| Error::Filter {
            listener: config.name.clone(),
            filter: filter.to_owned(),
            module: module.to_owned(),
            source: Box::new(source),
        };
        let mut load = |this: &mut Self, f: &FilterConfig, cfg: &serde_json::Value| {
            let module = this
                .module_file(&f.module)
                .map_err(|e| filter_error(&f.name, &f.module, e))?;
            this.filter(
                FilterSpec {
                    name: &f.name,
                    module,
                    config: cfg,
                    failure_policy: f.failure_policy,
                    isolation: f.isolation,
                    time_budget: f.time_budget,
                    max_memory_bytes: f.max_memory_bytes,
                },
                used,
            )
            .map_err(|e| filter_error(&f.name, &f.module, e))
        };
        let base: Vec<Arc<LoadedFilter>> = config
            .filters
            .iter()
            .map(|f| load(self, f, &f.config))
            .collect::<Result<_, _>>()?;
        let mut filters = base.len();
        let mut counted = HashSet::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let mut chain = Vec::with_capacity(base.len() + dynamic.len());
            for (f, loaded) in config.filters.iter().zip(&base) {
                match r.filters.get(&f.name) {
                    None => chain.push(Link::always(loaded.clone())),
                    Some(FilterOverride::Disabled) => {}
                    Some(FilterOverride::Config(cfg)) => {
                        chain.push(Link::always(load(self, f, cfg)?));
                        filters += 1;
                    }
                }
            }
            for (i, f) in dynamic.iter().enumerate() {
                if f.applies_to(config, &r.name) {
                    chain.push(Link {
                        filter: f.filter.clone(),
                        when: f.when.clone(),
                    });
                    if counted.insert(i) {
                        filters += 1;
                    }
                }
            }
            let choice = |reference: &UpstreamRef| Choice {
                label: reference.to_string().into(),
                upstream: upstreams.get(reference.name.as_str()).cloned(),
                reference: reference.clone(),
            };
            let target = match &r.target {
                RouteTarget::Upstream(reference) => Target::One(choice(reference)),
                RouteTarget::Split(split) => {
                    let mut sum = 0;
                    Target::Split {
                        choices: split.iter().map(|(r, _)| choice(r)).collect(),
                        cumulative: split
                            .iter()
                            .map(|(_, w)| {
                                sum += *w;
                                sum
                            })
                            .collect(),
                    }
                }
                RouteTarget::ByAuthority => Target::ByAuthority,
            };
            routes.push(Route {
                name: r.name.as_str().into(),
                matcher: r.matcher.clone(),
                timeout: r.timeout,
                retries: r.retries.clone().map(|p| {
                    let budget = Arc::new(Budget::new(p.budget));
                    (p, budget)
                }),
                metrics: self
                    .metrics
                    .route(&config.name, &r.name, target.metrics_label()),
                target,
                chain: Chain::new(chain),
            });
        }
        Ok(RouteTable {
            routes,
            upstreams: upstreams.clone(),
            filters,
        })
    }
}
