//! Host side of every interface in the `host` world, and the per-store state they work on.
//!
//! One [`HostState`] lives in each wasmtime `Store`, that is in each filter instance. Between
//! hook calls it holds nothing of any request: the proxy lends a request, response or body to
//! it for exactly one call ([`CallState`]) and takes it back afterwards, so a guest can never
//! observe another request's data.

pub(crate) mod clock;
pub(crate) mod http;
pub(crate) mod log;
pub(crate) mod metrics;
pub(crate) mod random;
pub(crate) mod token_bucket;
pub(crate) mod wasi;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{StoreLimits, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub use self::clock::{Clock, ManualClock, SystemClock};
pub use self::http::{RequestHead, RequestInfo, ResponseHead};
pub use self::log::{LogLevel, LogSink};
use self::metrics::InstanceMetrics;
pub use self::random::{Entropy, OsEntropy, SeededEntropy};
use self::token_bucket::{BucketFamily, TokenBuckets};
use super::EPOCH_TICK;
use super::health::Health;
use crate::metrics::FilterMetricRegistry;

/// What every instance of every filter shares: time, randomness, where logs also go, the metric
/// registry, the token buckets.
pub(crate) struct SharedHost {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) entropy: Arc<dyn Entropy>,
    pub(crate) log_sink: Option<Arc<dyn LogSink>>,
    pub(crate) metric_registry: Arc<FilterMetricRegistry>,
    pub(crate) buckets: Arc<TokenBuckets>,
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
/// fiber gets a callback every tick; each one adds the time since the previous one to what
/// the guest ran, unless that gap was long enough to mean the call sat waiting to be resumed
/// (the guest only runs a moment between being resumed and the next tick's callback), then
/// yields the thread, or ends the call once the budget is spent or the filter's breaker
/// opened.
#[derive(Debug)]
pub(crate) struct CallBudget {
    yielding: bool,
    limit: Duration,
    ran: Duration,
    last: Instant,
    /// How many times the current call yielded.
    pub(crate) yields: u32,
}

impl Default for CallBudget {
    fn default() -> Self {
        Self {
            yielding: false,
            limit: Duration::ZERO,
            ran: Duration::ZERO,
            last: Instant::now(),
            yields: 0,
        }
    }
}

impl CallBudget {
    /// A call begins.
    pub(crate) fn start(&mut self, limit: Duration, yielding: bool, now: Instant) {
        *self = Self {
            yielding,
            limit,
            ran: Duration::ZERO,
            last: now,
            yields: 0,
        };
    }

    /// The epoch deadline was reached: what the guest does next.
    pub(crate) fn on_tick(&mut self, health: &Health) -> UpdateDeadline {
        if !self.yielding {
            return UpdateDeadline::Interrupt;
        }
        let now = Instant::now();
        let gap = now.saturating_duration_since(self.last);
        if gap <= EPOCH_TICK * 2 {
            self.ran += gap;
        }
        self.last = now;
        if self.ran >= self.limit || health.breaker_open() {
            return UpdateDeadline::Interrupt;
        }
        self.yields += 1;
        UpdateDeadline::Yield(1)
    }
}

/// The request, response and body lent to the guest for one hook call.
#[derive(Default)]
pub(crate) struct CallState {
    pub(crate) request: RequestRef,
    pub(crate) info: Option<RequestInfo>,
    pub(crate) response: Option<ResponseHead>,
    pub(crate) body: Option<bytes::Bytes>,
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
    Shared(Arc<RequestHead>),
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
