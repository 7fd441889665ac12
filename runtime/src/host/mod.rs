//! Host side of every interface in the `host` world, and the per-store state they work on.
//!
//! One [`HostState`] lives in each wasmtime `Store`, that is in each filter instance. Between
//! hook calls it holds nothing of any request: the proxy lends a request, response or body to
//! it for exactly one call ([`CallState`]) and takes it back afterwards, so a guest can never
//! observe another request's data.

pub(crate) mod clock;
pub(crate) mod crypto;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod random;
pub(crate) mod store;
pub(crate) mod token_bucket;
pub(crate) mod v02;
pub(crate) mod wasi;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::http::{Directives, RequestHead, RequestInfo, ResponseHead, SentRequest};
pub use self::log::{LogLevel, LogSink};
use self::metrics::InstanceMetrics;
pub use self::random::{Entropy, OsEntropy, SeededEntropy};
use self::store::{FilterStore, Stores};
use self::token_bucket::{BucketFamily, TokenBuckets};
use super::health::Health;
use crate::metrics::FilterMetricRegistry;

/// What every instance of every filter shares: time, randomness, where logs also go, the metric
/// registry, the token buckets, the filters' stores.
pub(crate) struct SharedHost {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) entropy: Arc<dyn Entropy>,
    pub(crate) log_sink: Option<Arc<dyn LogSink>>,
    pub(crate) metric_registry: Arc<FilterMetricRegistry>,
    pub(crate) buckets: Arc<TokenBuckets>,
    pub(crate) stores: Arc<Stores>,
}

/// Longest panic message kept from a guest; the rest is cut off.
const MAX_PANIC_MESSAGE: usize = 4 * 1024;

/// State of one filter instance (one wasmtime store).
pub(crate) struct HostState {
    /// The filter's name, for logs and errors.
    pub(crate) filter: Arc<str>,
    /// What the current hook call may see and change.
    pub(crate) call: CallState,
    /// The message the guest's panic hook reported before trapping, if any.
    pub(crate) panic: Option<String>,
    /// How much of its time budget the current call has used.
    pub(crate) budget: CallBudget,
    pub(crate) limits: StoreLimits,
    pub(crate) shared: Arc<SharedHost>,
    pub(crate) metrics: InstanceMetrics,
    /// The token-bucket families this instance defined, indexed by handle.
    pub(crate) buckets: Vec<Arc<BucketFamily>>,
    /// The filter's store, looked up on first use.
    pub(crate) store: Option<Arc<FilterStore>>,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(filter: Arc<str>, max_memory_bytes: usize, shared: Arc<SharedHost>) -> Self {
        // Filters get no filesystem, network, environment or arguments; stdout and stderr are
        // discarded. WASI is linked only because Rust's std imports it (e.g. `HashMap` seeds).
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let limits = wasmtime::StoreLimitsBuilder::new()
            .memory_size(max_memory_bytes)
            .instances(64)
            .tables(64)
            .memories(4)
            .build();
        Self {
            metrics: InstanceMetrics::new(filter.clone(), shared.metric_registry.clone()),
            filter,
            call: CallState::default(),
            panic: None,
            budget: CallBudget::default(),
            limits,
            shared,
            buckets: Vec::new(),
            store: None,
            wasi,
            table: ResourceTable::new(),
        }
    }

    pub(crate) fn record_panic(&mut self, mut message: String) {
        if message.len() > MAX_PANIC_MESSAGE {
            let mut end = MAX_PANIC_MESSAGE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.panic = Some(message);
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The time budget of the current call, kept by the epoch callback.
///
/// A plain call's deadline is its whole budget: the first callback ends it. A call on a
/// fiber gets a callback every tick; each adds the time the guest ran since it last started
/// (the call's start, or its resumption after the last yield: the yield's future records
/// it), then yields the thread, or ends the call once the budget is spent or the filter's
/// breaker opened. Time spent waiting to be resumed is not the guest's.
#[derive(Debug)]
pub(crate) struct CallBudget {
    yielding: bool,
    limit: Duration,
    ran: Duration,
    origin: Instant,
    /// When the guest last started running, in nanoseconds since `origin`.
    running_since: Arc<AtomicU64>,
    /// How many times the current call yielded.
    pub(crate) yields: u32,
}

impl Default for CallBudget {
    fn default() -> Self {
        Self {
            yielding: false,
            limit: Duration::ZERO,
            ran: Duration::ZERO,
            origin: Instant::now(),
            running_since: Arc::new(AtomicU64::new(0)),
            yields: 0,
        }
    }
}

impl CallBudget {
    fn since_origin(origin: Instant, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A call begins.
    pub(crate) fn start(&mut self, limit: Duration, yielding: bool, now: Instant) {
        self.yielding = yielding;
        self.limit = limit;
        self.ran = Duration::ZERO;
        self.yields = 0;
        self.running_since
            .store(Self::since_origin(self.origin, now), Ordering::Relaxed);
    }

    /// The epoch deadline was reached: what the guest does next.
    pub(crate) fn on_tick(&mut self, health: &Health) -> UpdateDeadline {
        if !self.yielding {
            return UpdateDeadline::Interrupt;
        }
        let now = Instant::now();
        let since = self.running_since.load(Ordering::Relaxed);
        let ran = Self::since_origin(self.origin, now).saturating_sub(since);
        self.ran += Duration::from_nanos(ran);
        if self.ran >= self.limit || health.breaker_open() {
            return UpdateDeadline::Interrupt;
        }
        self.yields += 1;
        let running_since = self.running_since.clone();
        let origin = self.origin;
        // tokio's `yield_now` lets the scheduler poll its I/O driver before resuming this task,
        // so a yielding guest cannot starve the connections that share its worker.
        UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                running_since.store(
                    Self::since_origin(origin, Instant::now()),
                    Ordering::Relaxed,
                );
            }),
        )
    }
}

/// The request, response and body lent to the guest for one hook call.
#[derive(Default)]
pub(crate) struct CallState {
    pub(crate) request: RequestRef,
    /// Lent by request hooks' callers with the request; empty otherwise.
    pub(crate) directives: Directives,
    pub(crate) info: Option<RequestInfo>,
    pub(crate) response: Option<ResponseHead>,
    pub(crate) body: Option<bytes::Bytes>,
    /// The filter's state for this request (`request.state`), lent by the request's
    /// [`Lease`](crate::Lease).
    pub(crate) state: Option<Vec<u8>>,
}

/// How the current call holds the request head.
// Boxing `Mutable` would allocate on every hook call; there is one of these per instance.
#[allow(clippy::large_enum_variant)]
#[derive(Default)]
pub(crate) enum RequestRef {
    /// No request in scope (e.g. during `configure`).
    #[default]
    None,
    /// Request hooks: the guest may edit it.
    Mutable(RequestHead),
    /// Response hooks: the request that produced the response, read-only.
    Shared(Arc<SentRequest>),
}

impl CallState {
    /// Drop everything lent for the last call, keeping nothing alive by accident.
    pub(crate) fn clear(&mut self) {
        *self = CallState::default();
    }
}

impl HostState {
    /// The WASI resource table.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}
