//! The WebAssembly runtime: compiles filter modules, keeps warm instances, and calls hooks.
//!
//! Three lifetimes, three types:
//! - [`Runtime`]: created once per process. Owns the wasmtime engine (pooling allocator, epoch
//!   interruption), the linker with every host import, and the on-disk compilation cache.
//! - [`LoadedFilter`]: one per filter version and config. Holds the linked component, the
//!   configuration, the hooks the filter declared, and a pool of warm, configured instances.
//! - A hook call: takes an instance from the pool (or the request's own instance, for
//!   per-request isolation), lends it the request for one call under an epoch deadline, and
//!   returns it. An instance that traps or overruns its budget is thrown away.
//!
//! Why a shared pool and not an instance per thread: hook calls are synchronous and short, so
//! at most one call per worker thread is in flight per filter and the pool never grows past
//! that; idle instances cost little with the pooling allocator. A warm call measured ~2.6 µs
//! against ~24 µs for a fresh instance per request (see the README's instance model section).
//!
//! Two ways to call, chosen per filter: a plain call on the worker thread, the warm path; and a
//! call on a fiber (`call_async`) that yields the thread at every epoch tick, for a filter seen
//! to run past its budget or longer than 10 ms. A fiber costs ~0.2 µs per call (measured: a trivial export, 42 ns
//! plain, 240 ns on a fiber), which well-behaved filters never pay; a filter that spins holds a
//! worker at most once, for one budget, before its calls start yielding. Its budget counts the
//! time its guest code runs, not the time it waits to be resumed. See [`health`] for the
//! breaker and caps that bound what a misbehaving filter costs everyone else.

mod bindings;
pub mod cache;
mod contract;
pub mod health;
pub mod hop;
pub(crate) mod host;
pub mod memory;
pub mod metrics;
pub mod outbound;
pub mod policy;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::{HeaderName, HeaderValue, StatusCode};
use prometheus_client::metrics::counter::Counter;
use wasmtime::component::{InstancePre, Linker, Resource};
use wasmtime::{Engine, Store, Trap};

use self::bindings::Filter;
use self::bindings::weft::filter::http as wit;
pub use self::contract::{ACCEPTED as ACCEPTED_CONTRACTS, CURRENT as CONTRACT};
use self::contract::{Exports, Found, Indices, YieldingExports};
use self::health::{DelayGuard, FilterCaps, Health, OutboundGuard, ShortCircuit};
pub use self::host::store::{FilterStore, Refused as StoreRefused, StoreLimits};
pub use self::host::token_bucket::{BucketFamily, Spec as BucketSpec, Taken, TooManyKeys};
pub use self::host::{
    Clock, Directives, Entropy, LogLevel, LogSink, ManualClock, OsEntropy, RequestHead,
    RequestInfo, ResponseHead, SeededEntropy, SentRequest, SystemClock,
};
use self::host::{HostState, RequestRef, SharedHost};
pub use self::outbound::{CallError, CallRequest, CallResponse};
use crate::metrics::{FilterMetrics, LatencyHistogram};
pub use crate::policy::{Direction, FailurePolicy, Isolation};

/// How often the epoch advances; the resolution of filter time budgets.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The time `configure` may take on a new instance.
const CONFIGURE_BUDGET: Duration = Duration::from_secs(1);

/// After a call held its thread this long (or ran out of budget), this many calls of the
/// filter run on a fiber, yielding every tick; each that finishes without yielding counts one
/// down. Ten ticks, not one: a plain call that a busy machine merely preempted for a few
/// milliseconds should not put a healthy filter on the slower path.
const LONG_CALL: Duration = Duration::from_millis(10);
const YIELDING_CALLS: u32 = 1000;

/// Settings for a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeOptions {
    /// Where compiled modules are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// The clock filters see.
    pub clock: Arc<dyn Clock>,
    /// Where filters' randomness comes from.
    pub entropy: Arc<dyn Entropy>,
    /// Also receives every line filters log, at every level (the proxy's log still gets them).
    pub log_sink: Option<Arc<dyn LogSink>>,
    /// Caps on each filter's concurrent calls and held delays.
    pub caps: FilterCaps,
}

impl fmt::Debug for RuntimeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeOptions")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl RuntimeOptions {
    /// The defaults, without the on-disk compilation cache: for runtimes that compile a module
    /// once and throw it away (the harness, a control plane's sandbox, benchmarks).
    pub fn without_cache() -> Self {
        Self {
            cache_dir: None,
            ..Self::default()
        }
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            cache_dir: cache::default_dir(),
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            log_sink: None,
            caps: FilterCaps::default(),
        }
    }
}

/// Why a module or a filter could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module file could not be read.
    #[error("cannot read module {}: {source}", path.display())]
    Read {
        /// The module path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("{} is not a valid WebAssembly component: {reason}", path.display())]
    Compile {
        /// The module path.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// The component imports something the proxy does not provide.
    #[error("{} imports something weft does not provide: {reason}", path.display())]
    Link {
        /// The module path.
        path: PathBuf,
        /// What is missing or mismatched.
        reason: String,
    },
    /// The component does not export the filter interface.
    #[error(
        "{} is not a weft filter: it does not export `weft:filter/handler@{}` (or @{}) as \
         expected (was it built with weft-sdk's `export_filter!`?): {reason}",
        path.display(), contract::ACCEPTED[0], contract::ACCEPTED[1]
    )]
    NotAFilter {
        /// The module path.
        path: PathBuf,
        /// What wasmtime reported.
        reason: String,
    },
    /// The component was built against a version of the contract this proxy does not load.
    #[error(
        "{} was built against weft:filter@{found}, which this proxy does not load: it loads \
         {} and {}; rebuild the filter with a weft-sdk for weft:filter@{}",
        path.display(), contract::ACCEPTED[0], contract::ACCEPTED[1], contract::CURRENT
    )]
    Version {
        /// The module path.
        path: PathBuf,
        /// The version it was built against.
        found: String,
    },
    /// `configure` rejected the filter's config.
    #[error("configure rejected the config: {0}")]
    Rejected(String),
    /// `configure` failed: trap, timeout or instantiation failure.
    #[error("{0}")]
    Failed(#[from] FilterFailure),
    /// The runtime itself could not be set up.
    #[error("wasm runtime: {0}")]
    Engine(String),
}

/// A hook of the filter interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `configure`.
    Configure,
    /// `on-request-headers`.
    RequestHeaders,
    /// `on-request-body`.
    RequestBody,
    /// `on-response-headers`.
    ResponseHeaders,
    /// `on-response-body`.
    ResponseBody,
    /// `on-call-response`.
    CallResponse,
}

impl Hook {
    /// The WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Configure => "configure",
            Hook::RequestHeaders => "on-request-headers",
            Hook::RequestBody => "on-request-body",
            Hook::ResponseHeaders => "on-response-headers",
            Hook::ResponseBody => "on-response-body",
            Hook::CallResponse => "on-call-response",
        }
    }

    const CALLS: [Hook; 5] = [
        Hook::RequestHeaders,
        Hook::RequestBody,
        Hook::ResponseHeaders,
        Hook::ResponseBody,
        Hook::CallResponse,
    ];

    /// Whether the hook may edit the request (and so return `call`).
    fn edits_request(self) -> bool {
        matches!(
            self,
            Hook::RequestHeaders | Hook::RequestBody | Hook::CallResponse
        )
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Hook::Configure | Hook::RequestHeaders => 0,
            Hook::RequestBody => 1,
            Hook::ResponseHeaders => 2,
            Hook::ResponseBody => 3,
            Hook::CallResponse => 4,
        }
    }
}

/// The hooks a filter declared in `configure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hooks {
    /// Calls `on-request-headers`.
    pub request_headers: bool,
    /// Buffers the request body and calls `on-request-body`.
    pub request_body: bool,
    /// Calls `on-response-headers`.
    pub response_headers: bool,
    /// Buffers the response body and calls `on-response-body`.
    pub response_body: bool,
}

impl From<wit::Hooks> for Hooks {
    fn from(h: wit::Hooks) -> Self {
        Self {
            request_headers: h.contains(wit::Hooks::REQUEST_HEADERS),
            request_body: h.contains(wit::Hooks::REQUEST_BODY),
            response_headers: h.contains(wit::Hooks::RESPONSE_HEADERS),
            response_body: h.contains(wit::Hooks::RESPONSE_BODY),
        }
    }
}

/// What kind of failure a filter had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`...).
    Trap,
    /// The call ran past the filter's time budget.
    Timeout,
    /// The hook returned an action the proxy cannot carry out.
    InvalidAction,
    /// A new instance could not be created (memory, pool exhausted).
    Instantiate,
    /// Not called: the filter's breaker is open after repeated budget overruns.
    BreakerOpen,
    /// Not called: the filter has its maximum of calls in progress.
    Overloaded,
}

impl FailureKind {
    /// The kinds counted in `weft_filter_errors_total`, in declaration order (the order of the
    /// per-filter error counters). The filter was not called for the other kinds; they are
    /// counted in `weft_filter_short_circuits_total`.
    const ERRORS: [FailureKind; 4] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::InvalidAction,
        FailureKind::Instantiate,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::InvalidAction => "invalid_action",
            FailureKind::Instantiate => "instantiate",
            FailureKind::BreakerOpen => "breaker_open",
            FailureKind::Overloaded => "overloaded",
        }
    }

    /// Whether the filter was not called at all: its failure policy answered for it.
    pub fn is_short_circuit(self) -> bool {
        matches!(self, FailureKind::BreakerOpen | FailureKind::Overloaded)
    }
}

/// A filter failed during a call. Its failure policy decides what the request sees.
#[derive(Debug, Clone, thiserror::Error)]
#[error("filter \"{filter}\" {what} in {hook}: {message}", what = match kind {
    FailureKind::Trap => "trapped",
    FailureKind::Timeout => "ran past its time budget",
    FailureKind::InvalidAction => "returned an invalid action",
    FailureKind::Instantiate => "could not be instantiated",
    FailureKind::BreakerOpen | FailureKind::Overloaded => "was not called",
}, hook = hook.as_str())]
pub struct FilterFailure {
    /// The filter's name.
    pub filter: Arc<str>,
    /// The hook that failed.
    pub hook: Hook,
    /// What happened.
    pub kind: FailureKind,
    /// Details: the guest's panic message, the trap, or what was wrong with the action.
    pub message: String,
}

/// What the proxy does after a hook.
#[derive(Debug)]
pub enum Verdict {
    /// Go on.
    Continue,
    /// Reply with this response instead.
    Respond(http::Response<Bytes>),
    /// Hold the request this long, then go on, or send the response.
    Delay(Duration, Option<http::Response<Bytes>>),
    /// Send this call (or, when it cannot be sent, give the filter this error at once) and
    /// hand the result to [`LoadedFilter::on_call_response`], whose verdict takes this one's
    /// place.
    Call(Result<CallRequest, CallError>),
}

/// The labels of `weft_filter_outbound_calls_total`'s `result`: `ok`, then each
/// [`CallError`] kind.
const CALL_RESULTS: [&str; 7] = {
    let e = outbound::ERROR_LABELS;
    ["ok", e[0], e[1], e[2], e[3], e[4], e[5]]
};

/// The longest delay a filter may ask for.
pub const MAX_DELAY: Duration = Duration::from_secs(600);

/// The process-wide wasm engine and host linker.
pub struct Runtime {
    engine: Engine,
    /// The settings of the engines that compile modules apart from `engine`
    /// ([`cache::compile`]).
    compiler: wasmtime::Config,
    linker: Linker<HostState>,
    cache: Option<PathBuf>,
    metrics: Arc<FilterMetrics>,
    shared: Arc<SharedHost>,
    caps: FilterCaps,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Create the engine, link the host imports and start the epoch ticker.
    pub fn new(options: RuntimeOptions, metrics: Arc<FilterMetrics>) -> Result<Self, LoadError> {
        let engine = Engine::new(&engine_config(Allocation::Pooling))
            .map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        link_host(&mut linker).map_err(|e| LoadError::Engine(format!("{e:#}")))?;
        start_epoch_ticker(&engine);
        let cache = options.cache_dir.and_then(|dir| match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "module cache disabled: cannot create its directory");
                None
            }
        });
        let shared = Arc::new(SharedHost {
            clock: options.clock,
            entropy: options.entropy,
            log_sink: options.log_sink,
            metric_registry: metrics.filter_registry(),
            buckets: metrics.token_buckets(),
            stores: metrics.stores(),
        });
        Ok(Self {
            engine,
            compiler: engine_config(Allocation::OnDemand),
            linker,
            cache,
            metrics,
            shared,
            caps: options.caps,
        })
    }

    /// Read, verify, compile (or load from the cache) and link a module.
    pub fn load_module(&self, path: &Path) -> Result<Arc<Module>, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.module_from_bytes(path, &bytes)
    }

    /// Compile and link a module from its bytes; `path` is used in messages only.
    pub fn module_from_bytes(&self, path: &Path, bytes: &[u8]) -> Result<Arc<Module>, LoadError> {
        let digest = cache::digest(bytes);
        let component = cache::compile(
            &self.engine,
            &self.compiler,
            self.cache.as_deref(),
            &digest,
            bytes,
        )
        .map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        // The version first: a filter built against a contract this proxy does not load
        // imports that contract's interfaces too, and linking would only say those are missing.
        let version = match contract::version(&component, &self.engine) {
            Found::Accepted(version) => version,
            Found::Other(found) => {
                return Err(LoadError::Version {
                    path: path.to_owned(),
                    found,
                });
            }
            Found::None => {
                return Err(LoadError::NotAFilter {
                    path: path.to_owned(),
                    reason: "no `weft:filter/handler` export".into(),
                });
            }
        };
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let indices = Indices::new(&pre, version).map_err(|e| LoadError::NotAFilter {
            path: path.to_owned(),
            reason: format!("{e:#}"),
        })?;
        Ok(Arc::new(Module {
            path: path.to_owned(),
            digest,
            pre,
            indices,
        }))
    }

    /// Configure a filter: create its first instance, run `configure`, and keep the instance.
    pub fn load_filter(&self, spec: FilterSpec<'_>) -> Result<Arc<LoadedFilter>, LoadError> {
        let name: Arc<str> = spec.name.into();
        let config = serde_json::to_string(spec.config).map_err(|e| {
            LoadError::Rejected(format!("config is not representable as JSON: {e}"))
        })?;
        let hook_time = Hook::CALLS.map(|h| self.metrics.hook(&name, h.as_str()));
        let errors = FailureKind::ERRORS.map(|k| self.metrics.filter_error(&name, k.as_str()));
        let calls = CALL_RESULTS.map(|r| self.metrics.filter_call(&name, r));
        let health = Arc::new(Health::new(self.caps, self.metrics.filter_health(&name)));
        let capacity = std::thread::available_parallelism()
            .map_or(4, |n| n.get() * 2)
            .max(4);
        let mut filter = LoadedFilter {
            name,
            module: spec.module,
            engine: self.engine.clone(),
            config,
            hooks: Hooks::default(),
            failure_policy: spec.failure_policy,
            isolation: spec.isolation,
            budget: spec.time_budget,
            budget_ticks: ticks(spec.time_budget),
            max_memory_bytes: spec.max_memory_bytes,
            shared: self.shared.clone(),
            pool: ArrayQueue::new(capacity),
            hook_time,
            calls,
            errors,
            health,
            yielding_calls: AtomicU32::new(0),
        };
        let (instance, hooks) = filter.instantiate_configured()?;
        filter.hooks = hooks;
        if filter.isolation == Isolation::Pooled {
            // Cannot fail: the pool is empty.
            let _ = filter.pool.push(instance);
        }
        Ok(Arc::new(filter))
    }
}

/// How an engine allocates instances.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allocation {
    /// The runtime's engine: pooled slots, reused.
    Pooling,
    /// An engine that only compiles: no pool to reserve.
    OnDemand,
}

/// The settings of the runtime's engine, and of the engines that compile modules for it (the
/// same but for allocation, which does not change compiled code).
fn engine_config(allocation: Allocation) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    // A yielding call's fiber stack: guests run on it, host functions too.
    config.async_stack_size(2 << 20);
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // For profiling: `WEFT_WASM_PERFMAP=1` has wasmtime write /tmp/perf-<pid>.map, so `perf
    // report` names the guests' functions (filters built with their name section, i.e. not
    // stripped). bench/README.md, "Profiling a target".
    if std::env::var_os("WEFT_WASM_PERFMAP").is_some_and(|v| v == "1") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if allocation == Allocation::OnDemand {
        return config;
    }
    // Pooling makes instantiation cheap (slots are reused, not mapped anew). The counts bound
    // live instances across all filters; a Rust filter needs a few core instances each.
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(2000)
        .total_core_instances(8000)
        .total_memories(2000)
        .total_tables(8000)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16);
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    config
}

fn link_host(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    host::wasi::shadow_blocking_io(linker)?;
    Filter::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(linker, |s| s)?;
    bindings::v02::Filter::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        linker,
        |s| s,
    )?;
    Ok(())
}

/// Advance the engine's epoch every tick until the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("weft-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the epoch thread: filter time budgets are not enforced");
    }
}

/// Epoch ticks for a budget: rounded up, plus one because the current tick is partly over.
fn ticks(budget: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos();
    u64::try_from(budget.as_nanos().div_ceil(tick)).unwrap_or(u64::MAX / 2) + 1
}

/// A compiled and linked filter module.
pub struct Module {
    path: PathBuf,
    digest: String,
    pre: InstancePre<HostState>,
    /// Where the exports are, for plain calls and for calls on a fiber, in the contract
    /// version the module was built against.
    indices: Indices,
}

impl fmt::Debug for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Module")
            .field("path", &self.path)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Module {
    /// The module's sha256 digest, hex-encoded.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Where the module was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The one description of a filter to load, whatever its source (the proxy's config file, a
/// control plane snapshot, a control plane's sandbox, the harness).
#[derive(Debug, Clone)]
pub struct FilterSpec<'a> {
    /// The filter's name.
    pub name: &'a str,
    /// Its compiled module.
    pub module: Arc<Module>,
    /// Its config, passed to `configure` as JSON.
    pub config: &'a serde_json::Value,
    /// What happens when it fails.
    pub failure_policy: FailurePolicy,
    /// Instance reuse.
    pub isolation: Isolation,
    /// Per-call time budget.
    pub time_budget: Duration,
    /// Linear memory limit per instance.
    pub max_memory_bytes: usize,
}

impl FilterSpec<'_> {
    /// What makes two loaded filters interchangeable: a reload whose filter has the key of one
    /// already loaded keeps that one, with its warm instances and its state.
    pub fn key(&self) -> FilterKey {
        FilterKey {
            name: self.name.to_owned(),
            digest: self.module.digest().to_owned(),
            config: self.config.to_string(),
            failure_policy: self.failure_policy,
            isolation: self.isolation,
            time_budget: self.time_budget,
            max_memory_bytes: self.max_memory_bytes,
        }
    }
}

/// A [`FilterSpec`] as a map key: see [`FilterSpec::key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterKey {
    name: String,
    digest: String,
    config: String,
    failure_policy: FailurePolicy,
    isolation: Isolation,
    time_budget: Duration,
    max_memory_bytes: usize,
}

impl FilterKey {
    /// The sha256 of the filter's module.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

/// A warm instance: a store and the filter's exports in it.
struct Instance {
    store: Store<HostState>,
    exports: Exports,
    /// The exports for calls on a fiber, looked up the first time one is needed.
    yielding: Option<YieldingExports>,
    handle: wasmtime::component::Instance,
}

impl Instance {
    /// Look up the exports for calls on a fiber, once per instance.
    fn load_yielding(&mut self, module: &Module) -> wasmtime::Result<()> {
        if self.yielding.is_none() {
            self.yielding = Some(
                module
                    .indices
                    .load_yielding(&mut self.store, &self.handle)?,
            );
        }
        Ok(())
    }
}

/// One hook call in progress: its instance, how it is made, and when it started.
struct Prepared<'a> {
    instance: Instance,
    yielding: bool,
    start: Instant,
    _in_progress: Option<health::CallGuard<'a>>,
}

/// Call export `$call` with `$args` (after the store), plainly or on a fiber, in the contract
/// version the instance was built against; a 0.2.0 action is converted to 0.3.0's.
macro_rules! call_export {
    ($instance:expr, $module:expr, $yielding:expr, $call:ident ( $($arg:expr),* )) => {
        if $yielding {
            match $instance.load_yielding($module) {
                Err(e) => Err(e),
                // Boxed: the fiber call's future is large, and every hook call's future
                // would carry its size (and copy it) even when the call is plain.
                Ok(()) => match &$instance.yielding {
                    Some(YieldingExports::V03(exports)) => {
                        Box::pin(
                            exports
                                .weft_filter_handler()
                                .$call(&mut $instance.store, $($arg),*),
                        )
                        .await
                    }
                    Some(YieldingExports::V02(exports)) => {
                        Box::pin(
                            exports
                                .weft_filter_handler()
                                .$call(&mut $instance.store, $($arg),*),
                        )
                        .await
                        .map(wit::Action::from)
                    }
                    None => Err(wasmtime::format_err!("fiber exports missing")),
                },
            }
        } else {
            match &$instance.exports {
                Exports::V03(exports) => exports
                    .weft_filter_handler()
                    .$call(&mut $instance.store, $($arg),*),
                Exports::V02(exports) => exports
                    .weft_filter_handler()
                    .$call(&mut $instance.store, $($arg),*)
                    .map(wit::Action::from),
            }
        }
    };
}

/// A filter version with its config, ready to serve hook calls.
pub struct LoadedFilter {
    name: Arc<str>,
    module: Arc<Module>,
    engine: Engine,
    config: String,
    hooks: Hooks,
    failure_policy: FailurePolicy,
    isolation: Isolation,
    budget: Duration,
    budget_ticks: u64,
    max_memory_bytes: usize,
    shared: Arc<SharedHost>,
    pool: ArrayQueue<Instance>,
    hook_time: [LatencyHistogram; 5],
    /// `weft_filter_outbound_calls_total` by result: ok, then [`CallError`]'s kinds.
    calls: [Counter; 7],
    errors: [Counter; 4],
    health: Arc<Health>,
    /// Calls left to make on a fiber (see [`YIELDING_CALLS`]); 0: plain calls.
    yielding_calls: AtomicU32,
}

impl fmt::Debug for LoadedFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedFilter")
            .field("name", &self.name)
            .field("module", &self.module)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

/// What one request holds of one filter between hook calls: its own instance, for
/// per-request isolation (none for pooled filters), the state the filter attached to the
/// request (`request.state`), and the calls it made.
#[derive(Default)]
pub struct Lease {
    instance: Option<Instance>,
    state: Option<Vec<u8>>,
    calls: u32,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("instance", &self.instance.is_some())
            .field("state", &self.state.as_ref().map(Vec::len))
            .field("calls", &self.calls)
            .finish()
    }
}

impl Lease {
    /// Whether the lease holds anything that must outlive the hook call: an instance, or
    /// state the filter attached to the request. An embedder that lends one scratch lease to
    /// many filters keeps those that do.
    pub fn holds_anything(&self) -> bool {
        self.instance.is_some() || self.state.is_some() || self.calls > 0
    }

    /// A lease carrying a filter's state for a request (for embedders that keep the state
    /// themselves between hook calls, such as the test harness).
    pub fn with_state(state: Option<Vec<u8>>) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }

    /// The state the filter attached to the request, taken out of the lease.
    pub fn take_state(&mut self) -> Option<Vec<u8>> {
        self.state.take()
    }
}

impl LoadedFilter {
    /// The filter's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The hooks it declared.
    pub fn hooks(&self) -> Hooks {
        self.hooks
    }

    /// Its failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure_policy
    }

    /// How its instances are reused.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    /// The compiled module it runs (its path and digest).
    pub fn module(&self) -> &Arc<Module> {
        &self.module
    }

    /// Count a failure in the metrics and log it: at most one line per filter per
    /// [`health::FAILURE_LOG_INTERVAL`], saying how many were left out since the last.
    /// Short circuits are counted where they are decided and not logged one by one: the
    /// breaker logs when it opens and closes.
    pub fn record_failure(&self, failure: &FilterFailure) {
        if failure.kind.is_short_circuit() {
            return;
        }
        // `errors` was built from `FailureKind::ERRORS`, whose order is the declaration order.
        if let Some(counter) = self.errors.get(failure.kind as usize) {
            counter.inc();
        }
        if let Some(suppressed) = self.health.log_admits() {
            tracing::warn!(
                filter = &*self.name,
                hook = failure.hook.as_str(),
                kind = failure.kind.as_str(),
                suppressed,
                "{failure}{}",
                if suppressed > 0 {
                    format!(
                        " ({suppressed} more failures of this filter not logged since the last line)"
                    )
                } else {
                    String::new()
                }
            );
        }
    }

    /// Hold one more request in a delay this filter asked for, or `None` when it already
    /// holds its maximum (the delay is then skipped, and counted).
    pub fn hold_delay(&self) -> Option<DelayGuard<'_>> {
        self.health.hold_delay()
    }

    fn instantiate(&self) -> wasmtime::Result<Instance> {
        let state = HostState::new(
            self.name.clone(),
            self.max_memory_bytes,
            self.shared.clone(),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        let health = self.health.clone();
        store
            .epoch_deadline_callback(move |mut store| Ok(store.data_mut().budget.on_tick(&health)));
        store.set_epoch_deadline(ticks(CONFIGURE_BUDGET));
        let handle = self.module.pre.instantiate(&mut store)?;
        let exports = self.module.indices.load(&mut store, &handle)?;
        Ok(Instance {
            store,
            exports,
            yielding: None,
            handle,
        })
    }

    /// A new instance with `configure` run on it.
    fn instantiate_configured(&self) -> Result<(Instance, Hooks), LoadError> {
        let mut instance = self
            .instantiate()
            .map_err(|e| self.failure(Hook::Configure, e, None))?;
        let result = instance
            .exports
            .configure(&mut instance.store, &self.config);
        match result {
            Ok(Ok(hooks)) => Ok((instance, hooks)),
            Ok(Err(message)) => Err(LoadError::Rejected(message)),
            Err(e) => {
                let panic = instance.store.data_mut().panic.take();
                Err(self.failure(Hook::Configure, e, panic).into())
            }
        }
    }

    fn failure(&self, hook: Hook, error: wasmtime::Error, panic: Option<String>) -> FilterFailure {
        let trap = error.downcast_ref::<Trap>().copied();
        let (kind, message) = match (trap, panic) {
            (Some(Trap::Interrupt), _) => (
                FailureKind::Timeout,
                "interrupted at its time budget".to_owned(),
            ),
            (_, Some(panic)) => (FailureKind::Trap, format!("panicked: {panic}")),
            (Some(_), None) => (FailureKind::Trap, format!("{error:#}")),
            (None, None) if hook == Hook::Configure => {
                (FailureKind::Instantiate, format!("{error:#}"))
            }
            (None, None) => (FailureKind::Trap, format!("{error:#}")),
        };
        FilterFailure {
            filter: self.name.clone(),
            hook,
            kind,
            message,
        }
    }

    /// A failure for a call that was not made.
    fn short_circuit(&self, hook: Hook, why: ShortCircuit) -> FilterFailure {
        let (kind, message) = match why {
            ShortCircuit::BreakerOpen => (
                FailureKind::BreakerOpen,
                "its breaker is open after repeated time-budget overruns",
            ),
            ShortCircuit::Overloaded => (
                FailureKind::Overloaded,
                "it has its maximum of calls in progress",
            ),
        };
        FilterFailure {
            filter: self.name.clone(),
            hook,
            kind,
            message: message.to_owned(),
        }
    }

    /// Get ready for one hook call: check the breaker, decide how to call, and take an
    /// instance (the pool's, or the request's own `lease`).
    fn prepare(&self, lease: &mut Lease, hook: Hook) -> Result<Prepared<'_>, FilterFailure> {
        self.health
            .check_breaker()
            .map_err(|why| self.short_circuit(hook, why))?;
        let yielding = self.yielding_calls.load(Ordering::Relaxed) > 0;
        let in_progress = if yielding {
            Some(
                self.health
                    .enter()
                    .map_err(|why| self.short_circuit(hook, why))?,
            )
        } else {
            None
        };
        let instance = match lease.instance.take() {
            Some(i) => Ok(i),
            None => match self.isolation {
                Isolation::Pooled => match self.pool.pop() {
                    Some(i) => Ok(i),
                    None => self.instantiate_configured().map(|(i, _)| i),
                },
                Isolation::PerRequest => self.instantiate_configured().map(|(i, _)| i),
            },
        };
        let mut instance = instance.map_err(|e| match e {
            LoadError::Failed(f) => FilterFailure { hook, ..f },
            other => FilterFailure {
                filter: self.name.clone(),
                hook,
                kind: FailureKind::Instantiate,
                message: other.to_string(),
            },
        })?;
        let start = Instant::now();
        let state = instance.store.data_mut();
        state.budget.start(self.budget, yielding, start);
        state.call.state = lease.state.take();
        instance
            .store
            .set_epoch_deadline(if yielding { 1 } else { self.budget_ticks });
        Ok(Prepared {
            instance,
            yielding,
            start,
            _in_progress: in_progress,
        })
    }

    /// After a hook call: measure it, pick how the next calls are made, keep the instance (or
    /// drop it after a failure: its memory may be in any state) and turn the result into a
    /// verdict.
    fn complete(
        &self,
        lease: &mut Lease,
        hook: Hook,
        prepared: Prepared<'_>,
        result: wasmtime::Result<wit::Action>,
    ) -> Result<Verdict, FilterFailure> {
        let Prepared {
            mut instance,
            yielding,
            start,
            ..
        } = prepared;
        let elapsed = start.elapsed();
        self.hook_time[hook.index()].observe(elapsed);
        let state = instance.store.data_mut();
        let yields = state.budget.yields;
        lease.state = state.call.state.take();
        state.call.clear();
        let overran =
            matches!(&result, Err(e) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt));
        if !yielding && (elapsed > LONG_CALL || overran) {
            // It held this thread too long: its next calls yield.
            self.yielding_calls.store(YIELDING_CALLS, Ordering::Relaxed);
        } else if yielding && yields == 0 {
            let left = self.yielding_calls.load(Ordering::Relaxed);
            self.yielding_calls
                .store(left.saturating_sub(1), Ordering::Relaxed);
        }
        let outcome = match result.map(|action| self.verdict(hook, action)) {
            Ok(Ok(Verdict::Call(_))) if lease.calls >= outbound::MAX_CALLS_PER_REQUEST => {
                Err(FilterFailure {
                    filter: self.name.clone(),
                    hook,
                    kind: FailureKind::InvalidAction,
                    message: format!(
                        "a `call` after {} calls for one request",
                        outbound::MAX_CALLS_PER_REQUEST
                    ),
                })
            }
            Ok(Err(invalid)) => Err(invalid),
            Ok(Ok(verdict)) => {
                if matches!(verdict, Verdict::Call(_)) {
                    lease.calls += 1;
                }
                match self.isolation {
                    // A full pool means more instances were created than can be idle at once;
                    // dropping the surplus keeps idle memory bounded.
                    Isolation::Pooled => drop(self.pool.push(instance)),
                    Isolation::PerRequest => lease.instance = Some(instance),
                }
                Ok(verdict)
            }
            Err(e) => {
                let panic = instance.store.data_mut().panic.take();
                Err(self.failure(hook, e, panic))
            }
        };
        self.record_health(hook, &outcome);
        outcome
    }

    /// Feed the breaker, and say when it opens or closes.
    fn record_health(&self, hook: Hook, outcome: &Result<Verdict, FilterFailure>) {
        let index = hook.index();
        match outcome {
            Err(f) if f.kind == FailureKind::Timeout => {
                if let Some(open_for) = self.health.overran(index) {
                    tracing::warn!(
                        filter = &*self.name,
                        open_for_ms = u64::try_from(open_for.as_millis()).unwrap_or(u64::MAX),
                        "filter \"{}\" keeps running past its time budget: not calling it for {}; its failure policy ({}) answers meanwhile",
                        self.name,
                        humantime::format_duration(open_for),
                        self.failure_policy.as_str(),
                    );
                }
            }
            _ if self.health.troubled(index) && self.health.finished_in_time(index) => {
                tracing::info!(
                    filter = &*self.name,
                    "filter \"{}\" finished a call within its time budget: calling it again",
                    self.name
                );
            }
            _ => {}
        }
    }

    /// Call `on-request-headers`. `head` and `directives` are lent to the guest and always
    /// given back.
    pub async fn on_request_headers(
        &self,
        lease: &mut Lease,
        head: &mut RequestHead,
        directives: &mut Directives,
        info: &RequestInfo,
    ) -> Result<Verdict, FilterFailure> {
        let hook = Hook::RequestHeaders;
        let mut p = self.prepare(lease, hook)?;
        let i = &mut p.instance;
        let state = i.store.data_mut();
        lend_request(&mut state.call, head, directives, info);
        let result = call_export!(
            i,
            &self.module,
            p.yielding,
            call_on_request_headers(Resource::new_borrow(0))
        );
        restore_request(&mut i.store, head, directives);
        self.complete(lease, hook, p, result)
    }

    /// Call `on-request-body` with the whole buffered body, which the guest may replace.
    pub async fn on_request_body(
        &self,
        lease: &mut Lease,
        head: &mut RequestHead,
        directives: &mut Directives,
        info: &RequestInfo,
        body: &mut Bytes,
    ) -> Result<Verdict, FilterFailure> {
        let hook = Hook::RequestBody;
        let mut p = self.prepare(lease, hook)?;
        let i = &mut p.instance;
        let state = i.store.data_mut();
        lend_request(&mut state.call, head, directives, info);
        state.call.body = Some(std::mem::take(body));
        let result = call_export!(
            i,
            &self.module,
            p.yielding,
            call_on_request_body(Resource::new_borrow(0), Resource::new_borrow(0))
        );
        restore_request(&mut i.store, head, directives);
        *body = i.store.data_mut().call.body.take().unwrap_or_default();
        self.complete(lease, hook, p, result)
    }

    /// Call `on-response-headers`; the request is read-only here.
    pub async fn on_response_headers(
        &self,
        lease: &mut Lease,
        request: &Arc<SentRequest>,
        info: &RequestInfo,
        head: &mut ResponseHead,
    ) -> Result<Verdict, FilterFailure> {
        let hook = Hook::ResponseHeaders;
        let mut p = self.prepare(lease, hook)?;
        let i = &mut p.instance;
        let state = i.store.data_mut();
        state.call.request = RequestRef::Shared(request.clone());
        state.call.info = Some(info.clone());
        state.call.response = Some(std::mem::take(head));
        let result = call_export!(
            i,
            &self.module,
            p.yielding,
            call_on_response_headers(Resource::new_borrow(0), Resource::new_borrow(0))
        );
        *head = i.store.data_mut().call.response.take().unwrap_or_default();
        self.complete(lease, hook, p, result)
    }

    /// Call `on-response-body` with the whole buffered body.
    pub async fn on_response_body(
        &self,
        lease: &mut Lease,
        request: &Arc<SentRequest>,
        info: &RequestInfo,
        head: &mut ResponseHead,
        body: &mut Bytes,
    ) -> Result<Verdict, FilterFailure> {
        let hook = Hook::ResponseBody;
        let mut p = self.prepare(lease, hook)?;
        let i = &mut p.instance;
        let state = i.store.data_mut();
        state.call.request = RequestRef::Shared(request.clone());
        state.call.info = Some(info.clone());
        state.call.response = Some(std::mem::take(head));
        state.call.body = Some(std::mem::take(body));
        let result = call_export!(
            i,
            &self.module,
            p.yielding,
            call_on_response_body(
                Resource::new_borrow(0),
                Resource::new_borrow(0),
                Resource::new_borrow(0)
            )
        );
        let state = i.store.data_mut();
        *head = state.call.response.take().unwrap_or_default();
        *body = state.call.body.take().unwrap_or_default();
        self.complete(lease, hook, p, result)
    }

    /// Call `on-call-response` with the result of the call a hook asked for. The request is
    /// editable, as in the request hook that made the call; the verdict takes that hook's.
    pub async fn on_call_response(
        &self,
        lease: &mut Lease,
        head: &mut RequestHead,
        directives: &mut Directives,
        info: &RequestInfo,
        result: Result<CallResponse, CallError>,
    ) -> Result<Verdict, FilterFailure> {
        let hook = Hook::CallResponse;
        let mut p = self.prepare(lease, hook)?;
        let i = &mut p.instance;
        let state = i.store.data_mut();
        lend_request(&mut state.call, head, directives, info);
        let result = outbound::to_wit(result);
        let old = || wasmtime::format_err!("a weft:filter@0.2.0 filter has no on-call-response");
        let outcome = if p.yielding {
            match i.load_yielding(&self.module) {
                Err(e) => Err(e),
                Ok(()) => match &i.yielding {
                    Some(YieldingExports::V03(exports)) => {
                        Box::pin(exports.weft_filter_handler().call_on_call_response(
                            &mut i.store,
                            Resource::new_borrow(0),
                            result.as_ref(),
                        ))
                        .await
                    }
                    _ => Err(old()),
                },
            }
        } else {
            match &i.exports {
                Exports::V03(exports) => exports.weft_filter_handler().call_on_call_response(
                    &mut i.store,
                    Resource::new_borrow(0),
                    result.as_ref(),
                ),
                Exports::V02(_) => Err(old()),
            }
        };
        restore_request(&mut i.store, head, directives);
        self.complete(lease, hook, p, outcome)
    }

    /// Count one more outbound call in flight for this filter, or `None` when it has its
    /// maximum ([`FilterCaps::max_outbound_calls`]): the call then gets
    /// [`CallError::TooManyCalls`].
    pub fn hold_call(&self) -> Option<OutboundGuard<'_>> {
        self.health.hold_call()
    }

    /// Count a call's result in `weft_filter_outbound_calls_total`, and log a failed one (at
    /// most one line per filter per [`health::FAILURE_LOG_INTERVAL`]).
    pub fn record_call(&self, upstream: &str, result: &Result<CallResponse, CallError>) {
        let index = match result {
            Ok(_) => 0,
            Err(e) => e.index(),
        };
        if let Some(counter) = self.calls.get(index) {
            counter.inc();
        }
        if let Err(e) = result
            && let Some(suppressed) = self.health.log_admits()
        {
            tracing::warn!(
                filter = &*self.name,
                upstream,
                kind = e.as_str(),
                suppressed,
                "filter \"{}\": its call to {upstream:?} failed: {e}",
                self.name
            );
        }
    }

    /// Turn the guest's action into something the proxy can do, or a failure.
    fn verdict(&self, hook: Hook, action: wit::Action) -> Result<Verdict, FilterFailure> {
        let invalid = |message| FilterFailure {
            filter: self.name.clone(),
            hook,
            kind: FailureKind::InvalidAction,
            message,
        };
        match action {
            wit::Action::Continue => Ok(Verdict::Continue),
            wit::Action::Delay(delay) => {
                let ms = delay.milliseconds;
                let duration = Duration::from_millis(u64::from(ms));
                if duration > MAX_DELAY {
                    return Err(invalid(format!(
                        "delay of {ms} ms is longer than the maximum of {} ms",
                        MAX_DELAY.as_millis()
                    )));
                }
                let then = delay
                    .then
                    .map(local_response)
                    .transpose()
                    .map_err(invalid)?;
                Ok(Verdict::Delay(duration, then))
            }
            wit::Action::Respond(local) => {
                local_response(local).map(Verdict::Respond).map_err(invalid)
            }
            wit::Action::Call(_) if !hook.edits_request() => Err(invalid(format!(
                "`call` is for request hooks and on-call-response, not {}",
                hook.as_str()
            ))),
            wit::Action::Call(call) => Ok(Verdict::Call(outbound::check(call))),
        }
    }
}

/// Lock `mutex`, taking its data even when a thread panicked while holding it: what weft keeps
/// behind a mutex is valid between statements, so one panic must not poison every later use.
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An error and its sources on one line, `outer: inner: innermost`, for logs and messages. A
/// source whose text the line already holds (many errors print their source) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    // One line whatever the errors print.
    let one_line = |e: &dyn std::error::Error| e.to_string().trim().replace('\n', " ");
    let mut out = one_line(error);
    let mut source = error.source();
    while let Some(e) = source {
        let text = one_line(e);
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Drive a hook call from synchronous code (the test harness, benchmarks): a plain call is
/// done at the first poll; a call on a fiber is polled again each time it yields.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let mut future = std::pin::pin!(future);
    // The common case, a plain call, allocates nothing. A wake lost to the no-op waker costs
    // nothing either: the loop below polls again at once.
    let mut noop = std::task::Context::from_waker(std::task::Waker::noop());
    if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut noop) {
        return out;
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Lend a request hook the request, what it may ask for, and the request's facts; given back by
/// [`restore_request`].
fn lend_request(
    call: &mut host::CallState,
    head: &mut RequestHead,
    directives: &mut Directives,
    info: &RequestInfo,
) {
    call.request = RequestRef::Mutable(std::mem::take(head));
    call.directives = std::mem::take(directives);
    call.info = Some(info.clone());
}

fn restore_request(
    store: &mut Store<HostState>,
    head: &mut RequestHead,
    directives: &mut Directives,
) {
    let call = &mut store.data_mut().call;
    if let RequestRef::Mutable(h) = std::mem::take(&mut call.request) {
        *head = h;
    }
    *directives = std::mem::take(&mut call.directives);
}

/// Validate a guest's local response.
fn local_response(local: wit::LocalResponse) -> Result<http::Response<Bytes>, String> {
    let status = StatusCode::from_u16(local.status)
        .map_err(|_| format!("local response status {} is not in 100..=999", local.status))?;
    let mut response = http::Response::new(Bytes::from(local.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for (name, value) in local.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            format!("local response header name {name:?} is not a valid header name")
        })?;
        if crate::hop::is_hop_by_hop(&header) || header == http::header::CONTENT_LENGTH {
            return Err(format!(
                "local response header {name:?} is managed by the proxy and cannot be set"
            ));
        }
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| format!("local response header {name:?} has an invalid value"))?;
        headers.append(header, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_round_up_to_whole_ticks_plus_one() {
        assert_eq!(ticks(Duration::from_millis(1)), 2);
        assert_eq!(ticks(Duration::from_micros(1500)), 3);
        assert_eq!(ticks(Duration::from_millis(50)), 51);
    }

    #[test]
    fn local_responses_are_validated() {
        let ok = wit::LocalResponse {
            status: 403,
            headers: vec![("x-reason".into(), b"nope".to_vec())],
            body: b"denied".to_vec(),
        };
        let resp = local_response(ok).expect("valid response");
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["x-reason"], "nope");

        let bad_status = wit::LocalResponse {
            status: 42,
            headers: vec![],
            body: vec![],
        };
        assert!(
            local_response(bad_status)
                .expect_err("status 42")
                .contains("42")
        );

        let bad_name = wit::LocalResponse {
            status: 200,
            headers: vec![("bad name".into(), b"v".to_vec())],
            body: vec![],
        };
        assert!(
            local_response(bad_name)
                .expect_err("bad name")
                .contains("bad name")
        );

        let hop = wit::LocalResponse {
            status: 200,
            headers: vec![("transfer-encoding".into(), b"chunked".to_vec())],
            body: vec![],
        };
        assert!(
            local_response(hop)
                .expect_err("hop-by-hop")
                .contains("managed by the proxy")
        );
    }
}
