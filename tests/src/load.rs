//! A small HTTP/1.1 load generator for the side-by-side benchmark (`weft-bench`): a fixed
//! request rate with latency measured from when each request *should* have been sent, and a
//! closed loop for throughput.
//!
//! **Fixed rate, corrected.** Each of `connections` threads owns one kept-alive connection and
//! sends its share of the rate on a fixed schedule (request `j` of connection `k` is due at
//! `start + (j * connections + k) / rate`). A request's latency runs from its due time to the
//! last byte of the response, so a response that stalls also counts the wait of the requests
//! queued behind it (the "coordinated omission" correction of wrk2 and HdrHistogram). The
//! threads sleep with a 1 ns timer slack, so the generator's own scheduling error stays in the
//! microseconds; it is reported ([`Latencies::lag`]) so a run that could not keep up shows.
//!
//! **Closed loop.** `connections` connections on one thread (a current-thread tokio runtime),
//! each sending its next request as soon as the previous response ends, for a fixed time.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What every request looks like: `GET path` to `addr` with `headers`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// Extra request headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The response body length every reply must have (a short or failed reply is an error).
    pub body_len: Option<usize>,
}

impl Target {
    fn request(&self) -> anyhow::Result<Request<Empty<Bytes>>> {
        let mut builder = Request::get(self.path.as_str()).header(http::header::HOST, "bench");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        Ok(builder.body(Empty::new())?)
    }
}

/// A fixed-rate run.
#[derive(Debug, Clone, Copy)]
pub struct FixedRate {
    /// Requests per second, over all connections.
    pub rate: u32,
    /// How long to measure.
    pub duration: Duration,
    /// How long to send at the same rate before measuring (not recorded).
    pub warmup: Duration,
    /// Connections, each on its own thread.
    pub connections: usize,
}

/// The latencies of a fixed-rate run, in nanoseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// Corrected latencies: due time to the response's last byte.
    corrected: Vec<u64>,
    /// How late each request left against its due time (the generator's own lag).
    lag: Vec<u64>,
    /// Requests that failed or got an unexpected reply.
    pub errors: u64,
}

impl Latencies {
    /// Recorded requests.
    pub fn count(&self) -> usize {
        self.corrected.len()
    }

    /// The corrected latency at percentile `p` (0 to 100).
    pub fn percentile(&self, p: f64) -> Duration {
        Duration::from_nanos(percentile(&self.corrected, p))
    }

    /// How late requests left at percentile `p`: the generator's own scheduling error, which
    /// the corrected latencies include.
    pub fn lag(&self, p: f64) -> Duration {
        Duration::from_nanos(percentile(&self.lag, p))
    }

    fn merge(&mut self, other: Latencies) {
        self.corrected.extend(other.corrected);
        self.lag.extend(other.lag);
        self.errors += other.errors;
    }
}

/// The value at percentile `p` of sorted `values` (nearest rank); 0 when empty.
fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = (p / 100.0 * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// Sends `spec.rate` requests per second to `target` and records each one's corrected
/// latency. Blocks the calling thread for the run; fails if no connection can be made.
pub fn fixed_rate(target: &Target, spec: FixedRate) -> anyhow::Result<Latencies> {
    if spec.rate == 0 || spec.connections == 0 {
        bail!("a fixed-rate run needs a rate and at least one connection");
    }
    let interval = Duration::from_secs_f64(spec.connections as f64 / f64::from(spec.rate));
    let per_connection =
        ((spec.warmup + spec.duration).as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
    let warm = (spec.warmup.as_secs_f64() / interval.as_secs_f64()).ceil() as u64;
    // Every thread connects first, then all start on one clock.
    let start = Instant::now() + Duration::from_millis(200);
    let stagger = Duration::from_secs_f64(1.0 / f64::from(spec.rate));
    let threads: Vec<_> = (0..spec.connections)
        .map(|k| {
            let target = target.clone();
            let first = start + stagger * k as u32;
            std::thread::Builder::new()
                .name(format!("load-{k}"))
                .spawn(move || connection_at_rate(&target, first, interval, per_connection, warm))
        })
        .collect::<Result<_, _>>()
        .context("starting load threads")?;
    let mut all = Latencies::default();
    for thread in threads {
        let part = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        all.merge(part);
    }
    all.corrected.sort_unstable();
    all.lag.sort_unstable();
    Ok(all)
}

/// One connection's share of a fixed-rate run: `count` requests, one every `interval` from
/// `first`, the first `warm` of them unrecorded.
fn connection_at_rate(
    target: &Target,
    first: Instant,
    interval: Duration,
    count: u64,
    warm: u64,
) -> anyhow::Result<Latencies> {
    // Sleeps end within microseconds of their deadline instead of the default 50 µs slack.
    // Best effort: without it the run is still valid, only its lag figures are larger.
    let _ = rustix::thread::set_current_timer_slack(NonZeroU64::new(1));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut sender = rt.block_on(connect(target.addr))?;
    let mut latencies = Latencies {
        corrected: Vec::with_capacity(count as usize),
        lag: Vec::with_capacity(count as usize),
        errors: 0,
    };
    for j in 0..count {
        let due = first + interval * j as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let sent = Instant::now();
        let ok = rt.block_on(exchange(&mut sender, target));
        let done = Instant::now();
        if j < warm {
            if ok.is_err() {
                sender = rt.block_on(connect(target.addr))?;
            }
            continue;
        }
        match ok {
            Ok(()) => {
                latencies.corrected.push(nanos(done - due));
                latencies
                    .lag
                    .push(nanos(sent.saturating_duration_since(due)));
            }
            Err(_) => {
                latencies.errors += 1;
                sender = rt.block_on(connect(target.addr))?;
            }
        }
    }
    Ok(latencies)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The outcome of a closed-loop run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Throughput {
    /// Complete, correct replies within the measured time.
    pub requests: u64,
    /// Complete, correct replies during the warm-up (for figures taken over the whole run).
    pub warmup_requests: u64,
    /// Failed requests or unexpected replies.
    pub errors: u64,
    /// The measured time.
    pub elapsed: Duration,
}

impl Throughput {
    /// Correct replies per second.
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Keeps `connections` requests in flight to `target` (one per connection, each sent when the
/// previous reply ends) for `warmup` and then `duration`, on the calling thread.
pub fn closed_loop(
    target: &Target,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Throughput> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut senders = Vec::with_capacity(connections);
        for _ in 0..connections {
            senders.push(connect(target.addr).await?);
        }
        let measure_from = Instant::now() + warmup;
        let until = measure_from + duration;
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|mut sender| {
                let target = target.clone();
                tokio::spawn(async move {
                    let mut counts = Throughput::default();
                    loop {
                        let result = exchange(&mut sender, &target).await;
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        let measured = now >= measure_from;
                        match result {
                            Ok(()) if measured => counts.requests += 1,
                            Ok(()) => counts.warmup_requests += 1,
                            Err(_) => {
                                counts.errors += u64::from(measured);
                                sender = connect(target.addr).await?;
                            }
                        }
                    }
                    anyhow::Ok(counts)
                })
            })
            .collect();
        let mut total = Throughput {
            elapsed: duration,
            ..Throughput::default()
        };
        for task in tasks {
            let counts = task.await??;
            total.requests += counts.requests;
            total.warmup_requests += counts.warmup_requests;
            total.errors += counts.errors;
        }
        anyhow::Ok(total)
    })
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // A connection that fails ends here; its next request reports the error.
    tokio::spawn(connection);
    Ok(sender)
}

/// One request and its whole reply; an error unless it is a 200 of the expected length.
async fn exchange(sender: &mut SendRequest<Empty<Bytes>>, target: &Target) -> anyhow::Result<()> {
    sender.ready().await?;
    let response = sender.send_request(target.request()?).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if status != StatusCode::OK {
        bail!("status {status}: {}", String::from_utf8_lossy(&body));
    }
    if let Some(len) = target.body_len
        && body.len() != len
    {
        bail!("a body of {} bytes, not {len}", body.len());
    }
    Ok(())
}

/// An HTTP/1.1 upstream that answers every request with 200 and the same `body_len` bytes,
/// on its own thread (a current-thread runtime) so it runs where that thread is pinned.
#[derive(Debug)]
pub struct BytesUpstream {
    addrs: Vec<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BytesUpstream {
    /// Starts it on `127.0.0.1:0`.
    pub fn start(body_len: usize) -> anyhow::Result<Self> {
        Self::start_many(1, body_len)
    }

    /// Starts it on `listeners` ports of `127.0.0.1`, all served by the one thread: several
    /// endpoints for a balancer that cost the machine what one upstream costs.
    pub fn start_many(listeners: usize, body_len: usize) -> anyhow::Result<Self> {
        let mut bound = Vec::with_capacity(listeners);
        for _ in 0..listeners.max(1) {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            bound.push(listener);
        }
        let addrs = bound
            .iter()
            .map(std::net::TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let body = Bytes::from(vec![b'x'; body_len]);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut accepting = tokio::task::JoinSet::new();
                    for listener in bound {
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            return;
                        };
                        accepting.spawn(serve_bytes(listener, body.clone()));
                    }
                    tokio::select! {
                        _ = accepting.join_next() => {}
                        _ = stopped => {}
                    }
                });
            })?;
        Ok(Self {
            addrs,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Where it listens (the first address, with [`start_many`](Self::start_many)).
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address it listens on.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Answers every request on connections from `listener` with `body`.
async fn serve_bytes(listener: tokio::net::TcpListener, body: Bytes) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let service = hyper::service::service_fn(move |_request| {
            let body = body.clone();
            async move {
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    body,
                )))
            }
        });
        tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

impl Drop for BytesUpstream {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
