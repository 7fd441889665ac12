//! Running one filter in-process on the proxy's own runtime, without sockets: synthetic
//! requests in, the verdict and the edited request out, on a clock the test moves.
//!
//! This is the seed of the filter-author harness (the next step makes it a crate of its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};
use weft_proxy::config::{Direction, FailurePolicy, Isolation};
use weft_proxy::metrics::Metrics;
use weft_proxy::runtime::{
    FilterFailure, FilterSpec, Lease, LoadError, LoadedFilter, ManualClock, RequestHead,
    RequestInfo, ResponseHead, Runtime, RuntimeOptions, Verdict,
};

use crate::Scrape;

/// One configured filter on a runtime of its own, with a manual clock.
pub struct Harness {
    filter: Arc<LoadedFilter>,
    runtime: Arc<Runtime>,
    clock: Arc<ManualClock>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// The wall-clock time a harness starts at: 2026-01-01T00:00:00Z.
pub const HARNESS_EPOCH_SECS: u64 = 1_767_225_600;

impl Harness {
    /// Load `wasm` as filter `name` and run `configure` with `config`. The clock starts at
    /// monotonic zero and wall time [`HARNESS_EPOCH_SECS`], and moves only with
    /// [`Harness::advance`].
    pub fn load(name: &str, wasm: &str, config: serde_json::Value) -> Result<Self, LoadError> {
        let clock = Arc::new(ManualClock::new(
            SystemTime::UNIX_EPOCH + Duration::from_secs(HARNESS_EPOCH_SECS),
        ));
        let metrics = Arc::new(Metrics::new());
        let runtime = Arc::new(Runtime::new(
            RuntimeOptions {
                cache_dir: None,
                clock: clock.clone(),
            },
            metrics.clone(),
        )?);
        let filter = Self::configure(&runtime, name, wasm, &config)?;
        Ok(Self {
            filter,
            runtime,
            clock,
            metrics,
        })
    }

    fn configure(
        runtime: &Runtime,
        name: &str,
        wasm: &str,
        config: &serde_json::Value,
    ) -> Result<Arc<LoadedFilter>, LoadError> {
        let module = runtime.load_module(wasm.as_ref())?;
        runtime.load_filter(FilterSpec {
            name,
            module,
            config,
            failure_policy: FailurePolicy::FailClosed,
            isolation: Isolation::Pooled,
            time_budget: Duration::from_secs(1),
            max_memory_bytes: 64 << 20,
        })
    }

    /// Configure the same module again with another config, as a per-route override would:
    /// same filter name, same runtime, so it shares the first one's token buckets.
    pub fn reconfigure(&self, wasm: &str, config: serde_json::Value) -> Result<Self, LoadError> {
        let filter = Self::configure(&self.runtime, self.filter.name(), wasm, &config)?;
        Ok(Self {
            filter,
            runtime: self.runtime.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// Configure this harness's already compiled module again with `config`, on the same runtime
    /// and under the same filter name: [`Harness::reconfigure`] without compiling the module
    /// again (about a second per load for a large filter), for tests that try many configs.
    pub fn with_config(&self, config: serde_json::Value) -> Result<Self, LoadError> {
        let filter = self.runtime.load_filter(FilterSpec {
            name: self.filter.name(),
            module: self.filter.module().clone(),
            config: &config,
            failure_policy: FailurePolicy::FailClosed,
            isolation: Isolation::Pooled,
            time_budget: Duration::from_secs(1),
            max_memory_bytes: 64 << 20,
        })?;
        Ok(Self {
            filter,
            runtime: self.runtime.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        })
    }

    /// The loaded filter.
    pub fn filter(&self) -> &Arc<LoadedFilter> {
        &self.filter
    }

    /// Move the filter's clocks (monotonic and wall) forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Run `on-request-headers` on `request`, which keeps the filter's edits.
    pub fn on_request(&self, request: &mut TestRequest) -> Result<Verdict, FilterFailure> {
        self.filter
            .on_request_headers(&mut Lease::default(), &mut request.head, &request.info)
    }

    /// Run `on-response-headers` for `request` on `response`, which keeps the filter's edits.
    pub fn on_response(
        &self,
        request: &TestRequest,
        response: &mut ResponseHead,
    ) -> Result<Verdict, FilterFailure> {
        self.filter.on_response_headers(
            &mut Lease::default(),
            &Arc::new(request.head.clone()),
            &request.info,
            response,
        )
    }

    /// The metrics the filter reported, as the proxy would serve them.
    pub fn scrape(&self) -> Scrape {
        Scrape {
            text: self.metrics.encode(),
        }
    }
}

/// A synthetic request: its head as the proxy holds it, and the facts filters can read.
#[derive(Debug, Clone)]
pub struct TestRequest {
    /// Method, target, headers, chosen upstream, response headers to add.
    pub head: RequestHead,
    /// Client address, listener, route.
    pub info: RequestInfo,
}

impl TestRequest {
    /// `method path` from client `127.0.0.1:40000` on listener `inbound`, route `default`,
    /// upstream `backend`, HTTP/1.1, no headers.
    pub fn new(method: &str, path: &str) -> Self {
        let head = RequestHead {
            method: Method::from_bytes(method.as_bytes()).expect("test request: valid method"),
            uri: Uri::try_from(path).expect("test request: valid path"),
            version: Version::HTTP_11,
            headers: HeaderMap::new(),
            upstream: Some("backend".into()),
            response_headers: HeaderMap::new(),
        };
        let info = RequestInfo {
            client: Some(SocketAddr::from(([127, 0, 0, 1], 40000))),
            listener: "inbound".into(),
            direction: Direction::Inbound,
            route: Some("default".into()),
        };
        Self { head, info }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Add a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.head.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test request: valid header name"),
            HeaderValue::from_str(value).expect("test request: valid header value"),
        );
        self
    }

    /// Add a header whose value is raw bytes (e.g. not UTF-8; HTTP allows bytes 0x80-0xFF).
    #[must_use]
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.head.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test request: valid header name"),
            HeaderValue::from_bytes(value).expect("test request: valid header bytes"),
        );
        self
    }

    /// Set the client address.
    #[must_use]
    pub fn client(mut self, addr: &str) -> Self {
        self.info.client = Some(addr.parse().expect("test request: valid socket address"));
        self
    }

    /// Set the matched route.
    #[must_use]
    pub fn route(mut self, route: &str) -> Self {
        self.info.route = Some(route.into());
        self
    }

    /// Set the route's upstream.
    #[must_use]
    pub fn upstream(mut self, upstream: &str) -> Self {
        self.head.upstream = Some(upstream.into());
        self
    }

    /// The first value of request header `name`, as text.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name)?.to_str().ok()
    }

    /// The first value of response header `name` that the filter asked to add.
    pub fn added_response_header(&self, name: &str) -> Option<&str> {
        self.head.response_headers.get(name)?.to_str().ok()
    }

    /// The upstream the request goes to now.
    pub fn chosen_upstream(&self) -> Option<&str> {
        self.head.upstream.as_deref()
    }
}

/// A response head with this status and no headers.
pub fn response(status: u16) -> ResponseHead {
    ResponseHead {
        status: StatusCode::from_u16(status).expect("test response: valid status"),
        version: Version::HTTP_11,
        headers: HeaderMap::new(),
    }
}

/// What a verdict is, for assertions: `Continue`, `Respond(status)`, `Delay(duration)` or
/// `DelayThenRespond(duration, status)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// [`Verdict::Continue`].
    Continue,
    /// [`Verdict::Respond`] with this status.
    Respond(u16),
    /// [`Verdict::Delay`] without a response.
    Delay(Duration),
    /// [`Verdict::Delay`] with a response of this status.
    DelayThenRespond(Duration, u16),
}

impl From<&Verdict> for Decision {
    fn from(verdict: &Verdict) -> Self {
        match verdict {
            Verdict::Continue => Decision::Continue,
            Verdict::Respond(r) => Decision::Respond(r.status().as_u16()),
            Verdict::Delay(d, None) => Decision::Delay(*d),
            Verdict::Delay(d, Some(r)) => Decision::DelayThenRespond(*d, r.status().as_u16()),
        }
    }
}
