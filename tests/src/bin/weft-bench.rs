//! `weft-bench`: weft side by side with no proxy and with nginx, in one run.
//!
//! `bench/run` builds the binaries and calls this; see `bench/README.md`. It starts a local
//! upstream (1 KiB responses), nginx as a plain reverse proxy, and `weft-proxy` with 0, 1, 4
//! and 16 filters, each proxy with one worker and pinned to its own core while this process
//! (the load generator and the upstream) keeps to another. Then, for each round, it measures
//! every target in turn, interleaved: latency at a fixed rate (corrected for coordinated
//! omission) and throughput in a closed loop. It samples each proxy's resident memory at idle
//! and under load, and writes a markdown table and a JSON file with medians, spreads and ratios
//! to direct and to nginx, with the criterion micro-benchmarks' medians when they ran.
//!
//! With `--pairs` (bench/run passes it) it also measures sidecar pairs, client → proxy A →
//! proxy B → upstream: weft without TLS (`pair-plain`), weft with mesh mTLS (`pair-mtls`:
//! workload certificates from `weft-controlplane`), and two nginx doing the same mTLS
//! (`nginx-pair-tls`), with each hop's CPU per request; and the server side's CPU per full and
//! per resumed handshake, for weft B's strict listener and for nginx B.
//!
//! `weft-svc` is weft routing by authority to a service discovered from `weft-controlplane`
//! (directory source): three endpoints, least-request, retries on but never needed; against
//! `weft-0` (a static upstream) it is the cost of discovery, balancing and the retry policy.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use http::{HeaderName, HeaderValue};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};
use serde::Serialize;
use weft_tests::bench::{four_filters, four_filters_in, hs256_token, noop_filters, proxy_config};
use weft_tests::load::{self, BytesUpstream, FixedRate, Target};

/// Measure weft against no proxy and against nginx.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// The `weft-proxy` binary.
    #[arg(long, default_value = "target/release/weft-proxy")]
    proxy: PathBuf,
    /// Another `weft-proxy` binary (say, main's before a change) measured as `base-0` and
    /// `base-4` in the same interleaved rounds, so a change is judged against noise that hit
    /// both alike.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// A folder with the four policy filters built another way (`authz.wasm`,
    /// `rate_limit.wasm`, `header_router.wasm`, `fault_injection.wasm`), loaded by `base-4`
    /// instead of the tests' builds: measures a guest-side change (SDK, filter code, build
    /// profile) in the same rounds. Without `--baseline`, base-4 runs `--proxy`.
    #[arg(long)]
    baseline_guests: Option<PathBuf>,
    /// The `weft-controlplane` binary, the certificate authority of `pair-mtls` (default:
    /// beside `--proxy`).
    #[arg(long)]
    controlplane: Option<PathBuf>,
    /// The nginx binary (default: `nginx` on PATH, then /usr/sbin/nginx).
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// Leave nginx out (for a machine without it); the ratios to nginx are then missing.
    #[arg(long)]
    no_nginx: bool,
    /// Where to write `latest.md` and `latest.json`.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Rounds; every target is measured once per round, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The fixed rate of the latency runs (requests per second).
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// How long each latency run measures.
    #[arg(long, default_value = "10s", value_parser = weft_yaml::parse_duration)]
    latency_time: Duration,
    /// How long each throughput run measures.
    #[arg(long, default_value = "5s", value_parser = weft_yaml::parse_duration)]
    throughput_time: Duration,
    /// Connections of the latency runs (each on its own thread).
    #[arg(long, default_value_t = 10)]
    latency_connections: usize,
    /// Connections of the throughput runs.
    #[arg(long, default_value_t = 32)]
    throughput_connections: usize,
    /// criterion's output directory, to put the micro-benchmarks' medians in the report.
    #[arg(long, default_value = "target/criterion")]
    criterion: PathBuf,
    /// Put in the report the criterion results written since this Unix time (seconds);
    /// `bench/run` passes when its criterion run started. Without it, none are.
    #[arg(long)]
    micro_since: Option<u64>,
    /// Measure only these targets (comma-separated: direct, nginx, weft-0, weft-1, weft-4,
    /// weft-16, weft-svc, pair-plain, pair-mtls, nginx-pair-tls), for profiling one of them.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also measure the sidecar pairs (pair-plain, pair-mtls, nginx-pair-tls) and the TLS
    /// servers' handshake cost; `bench/run` passes it.
    #[arg(long)]
    pairs: bool,
    /// Handshakes of each kind (full, resumed) per TLS server and round.
    #[arg(long, default_value_t = 2000)]
    handshakes: usize,
    /// A quick run to check the machinery (1 round, 1 s each); its figures mean little.
    #[arg(long)]
    smoke: bool,
}

/// The sidecar pairs, measured with `--pairs` or when `--only` names them.
const PAIRS: [&str; 3] = ["pair-plain", "pair-mtls", "nginx-pair-tls"];
/// The mesh's trust domain and the pair's namespace: A runs as service account `orders`, B as
/// `reviews`, as in the proxy's documentation.
const TRUST_DOMAIN: &str = "cluster.local";
const NAMESPACE: &str = "shop";
/// The DNS name in nginx B's certificate that nginx A verifies (`proxy_ssl_name`); also the
/// name the handshake client sends (weft ignores it: identities are SPIFFE IDs).
const PEER_DNS_NAME: &str = "reviews.shop.svc";

/// Every response's body length: the issue's 1 KiB.
const BODY_LEN: usize = 1024;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.rounds = 1;
        args.latency_time = Duration::from_secs(1);
        args.throughput_time = Duration::from_secs(1);
        args.handshakes = args.handshakes.min(100);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Which cores the load and the proxies run on, if this machine has two to split.
#[derive(Debug, Clone, Copy, Serialize)]
struct Pinning {
    load_core: usize,
    proxy_core: usize,
    /// B of a pair: a core of its own on a machine with three or more, else `proxy_core`, so
    /// that A and B share the proxy core and the load keeps its own.
    peer_core: usize,
}

fn pin() -> Option<Pinning> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = which("taskset").is_some();
    if cores < 2 || !taskset {
        eprintln!(
            "warning: not pinning ({cores} cores available, taskset {}): load and proxy share cores",
            if taskset { "found" } else { "missing" }
        );
        return None;
    }
    let pinning = Pinning {
        load_core: 0,
        proxy_core: 1,
        peer_core: if cores >= 3 { 2 } else { 1 },
    };
    let mut set = rustix::thread::CpuSet::new();
    set.set(pinning.load_core);
    // Threads started from now on (the upstream's, the load generator's) inherit this.
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("warning: cannot pin the load generator: {e}");
        return None;
    }
    Some(pinning)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// One thing the load generator talks to.
struct Subject {
    name: &'static str,
    what: String,
    addr: SocketAddr,
    /// The proxy the client talks to (A of a pair).
    process: Option<Server>,
    /// The second hop of a pair (B), and where it listens.
    peer: Option<Server>,
    peer_addr: Option<SocketAddr>,
    /// Admin addresses whose `/ready` must answer 200 before anything is measured (weft's
    /// pairs: the mesh proxies are ready once they hold a workload certificate).
    admins: Vec<SocketAddr>,
    /// Processes it needs that are not measured (the control plane of `pair-mtls`).
    helpers: Vec<Server>,
    /// B's TLS listener, for the handshake measurement (the TLS pairs).
    handshake: Option<HandshakeTarget>,
    /// The mesh CA's directory (`pair-mtls`): once the control plane has written it, the
    /// handshake client's certificate is signed with it.
    mesh_ca: Option<PathBuf>,
    /// Upstreams of its own (`weft-svc`'s endpoints).
    upstreams: Vec<BytesUpstream>,
}

impl Subject {
    fn new(name: &'static str, what: String, addr: SocketAddr, process: Option<Server>) -> Self {
        Self {
            name,
            what,
            addr,
            process,
            peer: None,
            peer_addr: None,
            admins: Vec::new(),
            helpers: Vec::new(),
            handshake: None,
            mesh_ca: None,
            upstreams: Vec::new(),
        }
    }

    /// A and B, the processes whose CPU is counted.
    fn hops(&self) -> Vec<&Server> {
        self.process.iter().chain(&self.peer).collect()
    }

    fn log_tails(&self) -> String {
        self.process
            .iter()
            .chain(&self.peer)
            .chain(&self.helpers)
            .map(Server::log_tail)
            .collect()
    }

    fn stop(self) {
        for server in self
            .process
            .into_iter()
            .chain(self.peer)
            .chain(self.helpers)
        {
            server.stop();
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let machine = machine(); // before pinning narrows what this process sees
    let pinning = pin();
    let wanted = |name: &str| {
        if PAIRS.contains(&name) {
            return args.only.iter().any(|o| o == name) || (args.pairs && args.only.is_empty());
        }
        args.only.is_empty()
            || args.only.iter().any(|o| o == name)
            || (name.starts_with("base-") && args.baseline.is_some())
    };
    let singles = [
        "direct", "nginx", "weft-0", "weft-1", "weft-4", "weft-16", "weft-svc", "base-0", "base-4",
    ];
    if let Some(unknown) = args
        .only
        .iter()
        .find(|o| !PAIRS.contains(&o.as_str()) && !singles.contains(&o.as_str()))
    {
        bail!("--only {unknown}: no such target");
    }
    let work = tempfile::tempdir()?;
    let upstream = BytesUpstream::start(BODY_LEN)?;
    eprintln!(
        "upstream on {} ({BODY_LEN}-byte responses)",
        upstream.addr()
    );

    let mut subjects = vec![Subject::new(
        "direct",
        "client → upstream, no proxy (the floor)".into(),
        upstream.addr(),
        None,
    )];
    let mut nginx_version = None;
    if !args.no_nginx && wanted("nginx") {
        let nginx = find_nginx(args.nginx.as_deref())?;
        nginx_version = Some(version_of(&nginx, "-v"));
        let (server, addr) = start_nginx(
            &nginx,
            work.path(),
            upstream.addr(),
            pinning.map(|p| p.proxy_core),
        )?;
        subjects.push(Subject::new(
            "nginx",
            "nginx, plain reverse proxy, 1 worker, upstream keepalive".into(),
            addr,
            Some(server),
        ));
    }
    if !args.proxy.is_file() {
        bail!(
            "{}: no such file; build it with `cargo build --release -p weft-proxy` (bench/run does)",
            args.proxy.display()
        );
    }
    let weft_configs: [(&'static str, String, String); 4] = [
        ("weft-0", " []".into(), "weft, no filters, 1 worker".into()),
        (
            "weft-1",
            noop_filters(1),
            "weft, 1 no-op filter, 1 worker".into(),
        ),
        (
            "weft-4",
            four_filters(),
            "weft, the four policy filters (authz HS256 → rate-limit → header-router → fault-injection; all allow, no fault), 1 worker".into(),
        ),
        (
            "weft-16",
            noop_filters(16),
            "weft, 16 no-op filters, 1 worker".into(),
        ),
    ];
    let base_four = match &args.baseline_guests {
        Some(dir) => four_filters_in(dir).context("--baseline-guests")?,
        None => four_filters(),
    };
    let baseline_binary = match (&args.baseline, &args.baseline_guests) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(_)) => Some(args.proxy.clone()),
        (None, None) => None,
    };
    let baseline: Vec<(&'static str, String, String)> = match &baseline_binary {
        None => Vec::new(),
        Some(path) => {
            if !path.is_file() {
                bail!("--baseline {}: no such file", path.display());
            }
            let guests = match &args.baseline_guests {
                Some(dir) => format!(", filters from {}", dir.display()),
                None => String::new(),
            };
            vec![
                (
                    "base-0",
                    " []".into(),
                    format!("the baseline binary ({}), no filters", path.display()),
                ),
                (
                    "base-4",
                    base_four,
                    format!(
                        "the baseline binary ({}), the four policy filters{guests}",
                        path.display()
                    ),
                ),
            ]
        }
    };
    for (name, filters, what) in weft_configs.into_iter().chain(baseline) {
        if !wanted(name) {
            continue;
        }
        let binary = match (name.starts_with("base-"), &baseline_binary) {
            (true, Some(path)) => path,
            _ => &args.proxy,
        };
        let (server, addr) = start_weft(
            binary,
            work.path(),
            name,
            &filters,
            upstream.addr(),
            pinning.map(|p| p.proxy_core),
        )?;
        subjects.push(Subject::new(name, what, addr, Some(server)));
    }
    let controlplane = args.controlplane.clone().unwrap_or_else(|| {
        args.proxy
            .with_file_name(format!("weft-controlplane{}", std::env::consts::EXE_SUFFIX))
    });
    let need_controlplane = |target: &str| {
        if controlplane.is_file() {
            return Ok(());
        }
        bail!(
            "{}: no such file; build it with `cargo build --release --workspace` (bench/run \
             does), pass --controlplane PATH, or leave {target} out",
            controlplane.display()
        )
    };
    if wanted("weft-svc") {
        need_controlplane("weft-svc")?;
        subjects.push(start_weft_discovered(
            &args.proxy,
            &controlplane,
            work.path(),
            pinning.map(|p| p.proxy_core),
        )?);
    }
    if wanted("pair-plain") {
        subjects.push(start_weft_pair(
            &args.proxy,
            work.path(),
            "pair-plain",
            None,
            upstream.addr(),
            pinning,
        )?);
    }
    if wanted("pair-mtls") {
        need_controlplane("pair-mtls")?;
        let mesh = start_control_plane(&controlplane, work.path())?;
        subjects.push(start_weft_pair(
            &args.proxy,
            work.path(),
            "pair-mtls",
            Some(mesh),
            upstream.addr(),
            pinning,
        )?);
    }
    if !args.no_nginx && wanted("nginx-pair-tls") {
        let nginx = find_nginx(args.nginx.as_deref())?;
        nginx_version.get_or_insert_with(|| version_of(&nginx, "-v"));
        subjects.push(start_nginx_pair(
            &nginx,
            work.path(),
            upstream.addr(),
            pinning,
        )?);
    }

    let token = hs256_token();
    let targets: Vec<Target> = subjects
        .iter()
        .map(|s| Target {
            addr: s.addr,
            path: "/api/orders".into(),
            headers: vec![(
                HeaderName::from_static("authorization"),
                HeaderValue::try_from(format!("Bearer {token}")).expect("a token is a valid value"),
            )],
            body_len: Some(BODY_LEN),
        })
        .collect();

    // Every target answers correctly before anything is measured; then idle memory.
    let mut memory: BTreeMap<&str, Memory> = BTreeMap::new();
    let mut peer_memory: BTreeMap<&str, Memory> = BTreeMap::new();
    for (subject, target) in subjects.iter_mut().zip(&targets) {
        for admin in &subject.admins {
            wait_until_ready(*admin).with_context(|| {
                format!(
                    "{}: a proxy never became ready{}",
                    subject.name,
                    subject.log_tails()
                )
            })?;
        }
        wait_until_serving(target).with_context(|| {
            format!(
                "{} never served correctly{}",
                subject.name,
                subject.log_tails()
            )
        })?;
        if let Some(ca_dir) = &subject.mesh_ca {
            // The requests went over mTLS: A connected to B with TLS, and B accepted it.
            let (a_admin, b_admin) = (subject.admins[0], subject.admins[1]);
            let outbound = handshakes_ok(a_admin, "outbound")?;
            let inbound = handshakes_ok(b_admin, "inbound")?;
            if outbound == 0 || inbound == 0 {
                bail!(
                    "{}: served, but with {outbound} mTLS handshakes counted by A (outbound) \
                     and {inbound} by B (inbound): not a mesh pair{}",
                    subject.name,
                    subject.log_tails()
                );
            }
            let addr = subject.peer_addr.context("a pair has B's address")?;
            subject.handshake = Some(
                HandshakeTarget::mesh(ca_dir, addr)
                    .with_context(|| format!("a client certificate from {}", ca_dir.display()))?,
            );
        }
        if let Some(server) = &subject.process {
            let m = memory.entry(subject.name).or_default();
            m.idle_kib = server.rss_kib();
            m.idle_private_kib = server.private_kib();
        }
        if let Some(server) = &subject.peer {
            let m = peer_memory.entry(subject.name).or_default();
            m.idle_kib = server.rss_kib();
            m.idle_private_kib = server.private_kib();
        }
    }

    let latency = FixedRate {
        rate: args.rate,
        duration: args.latency_time,
        warmup: Duration::from_secs(1).min(args.latency_time),
        connections: args.latency_connections,
    };
    let mut rounds: BTreeMap<&str, Vec<RoundResult>> = BTreeMap::new();
    let mut handshakes: BTreeMap<&str, Vec<HandshakeRound>> = BTreeMap::new();
    for round in 1..=args.rounds {
        for (subject, target) in subjects.iter().zip(&targets) {
            if subject.name == "weft-1" || !wanted(subject.name) {
                continue; // Measured for memory only.
            }
            eprint!(
                "round {round}/{}: {:<14} latency…",
                args.rounds, subject.name
            );
            let lat = load::fixed_rate(target, latency)?;
            eprint!(" throughput…");
            let hops = subject.hops();
            let cpu_before: Vec<f64> = hops.iter().map(|s| s.cpu_seconds()).collect();
            let thr = load::closed_loop(
                target,
                args.throughput_connections,
                Duration::from_secs(1).min(args.throughput_time),
                args.throughput_time,
            )?;
            let served = (thr.requests + thr.warmup_requests).max(1) as f64;
            let hop_cpu: Vec<f64> = hops
                .iter()
                .zip(&cpu_before)
                .map(|(server, before)| (server.cpu_seconds() - before) * 1e6 / served)
                .collect();
            let cpu_us_per_request = (!hop_cpu.is_empty()).then(|| hop_cpu.iter().sum());
            let hop_cpu_us_per_request = match hop_cpu[..] {
                [a, b] => Some([a, b]),
                _ => None,
            };
            let result = RoundResult {
                p50_us: micros(lat.percentile(50.0)),
                p90_us: micros(lat.percentile(90.0)),
                p99_us: micros(lat.percentile(99.0)),
                max_us: micros(lat.percentile(100.0)),
                lag_p99_us: micros(lat.lag(99.0)),
                latency_requests: lat.count() as u64,
                latency_errors: lat.errors,
                rps: thr.per_second(),
                cpu_us_per_request,
                hop_cpu_us_per_request,
                throughput_errors: thr.errors,
            };
            eprintln!(
                " p50 {:.0} µs, p99 {:.0} µs, {:.0} req/s{}{}",
                result.p50_us,
                result.p99_us,
                result.rps,
                match (result.hop_cpu_us_per_request, result.cpu_us_per_request) {
                    (Some([a, b]), _) => format!(", CPU {a:.1} + {b:.1} µs/request"),
                    (None, Some(cpu)) => format!(", CPU {cpu:.1} µs/request"),
                    (None, None) => String::new(),
                },
                if result.latency_errors + result.throughput_errors > 0 {
                    format!(
                        " ({} errors)",
                        result.latency_errors + result.throughput_errors
                    )
                } else {
                    String::new()
                }
            );
            if let Some(server) = &subject.process {
                memory.entry(subject.name).or_default().sample(server);
            }
            if let Some(server) = &subject.peer {
                peer_memory.entry(subject.name).or_default().sample(server);
            }
            rounds.entry(subject.name).or_default().push(result);
        }
        // The TLS servers' handshake cost, in the same rounds.
        for subject in &subjects {
            let (Some(target), Some(server)) = (&subject.handshake, &subject.peer) else {
                continue;
            };
            eprint!(
                "round {round}/{}: {:<14} {} handshakes of each kind, full…",
                args.rounds, subject.name, args.handshakes
            );
            let full = measure_handshakes(target, server, args.handshakes, false)?;
            eprint!(" resumed…");
            let resumed = measure_handshakes(target, server, args.handshakes, true)?;
            eprintln!(
                " server CPU {:.0} µs full, {:.0} µs resumed ({} of {} resumed){}",
                full.server_cpu_us,
                resumed.server_cpu_us,
                resumed.resumed,
                resumed.handshakes,
                if full.errors + resumed.errors > 0 {
                    format!(" ({} errors)", full.errors + resumed.errors)
                } else {
                    String::new()
                }
            );
            handshakes
                .entry(subject.name)
                .or_default()
                .push(HandshakeRound { full, resumed });
        }
    }
    // weft-1 gets a throughput run of its own, for its under-load memory.
    if let Some((subject, target)) = subjects
        .iter()
        .zip(&targets)
        .find(|(s, _)| s.name == "weft-1")
    {
        load::closed_loop(
            target,
            args.throughput_connections,
            Duration::ZERO,
            args.throughput_time,
        )?;
        if let Some(server) = &subject.process {
            let m = memory.entry(subject.name).or_default();
            m.load_kib = server.rss_kib();
            m.load_private_kib = server.private_kib();
            m.peak_kib = server.peak_rss_kib();
        }
    }

    let report = Report::new(
        args,
        machine,
        pinning,
        nginx_version,
        &subjects,
        Measured {
            rounds,
            memory,
            peer_memory,
            handshakes,
        },
    );
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("latest.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let md = args.out.join("latest.md");
    let micro = args
        .micro_since
        .map(|since| micro_benchmarks(&args.criterion, UNIX_EPOCH + Duration::from_secs(since)))
        .unwrap_or_default();
    let table = report.markdown(&micro);
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{table}")?;
    writeln!(stdout, "wrote {} and {}", md.display(), json.display())?;
    for subject in subjects {
        subject.stop();
    }
    Ok(())
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Sends requests until one gets the expected reply, for at most ten seconds.
fn wait_until_serving(target: &Target) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let tried = load::closed_loop(target, 1, Duration::ZERO, Duration::from_millis(50));
        match tried {
            Ok(t) if t.requests > 0 && t.errors == 0 => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Ok(t) => bail!("{} errors in the last try", t.errors),
            Err(e) => return Err(e),
        }
    }
}

/// Polls `GET /ready` on a weft admin address until it answers 200, for at most 30 seconds
/// (a mesh proxy first gets its workload certificate from the control plane).
fn wait_until_ready(admin: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match http_get(admin, "/ready") {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => format!("{status} {}", body.trim()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!("http://{admin}/ready: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bodyless `GET` over HTTP/1.0 (so the body is neither chunked nor kept alive): the status
/// and the body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// weft's `weft_tls_handshakes_total{side, result="ok"}` at `admin`.
fn handshakes_ok(admin: SocketAddr, side: &str) -> anyhow::Result<u64> {
    let (status, metrics) = http_get(admin, "/metrics")?;
    if status != 200 {
        bail!("http://{admin}/metrics: {status}");
    }
    let side = format!("side=\"{side}\"");
    Ok(metrics
        .lines()
        .filter(|l| l.starts_with("weft_tls_handshakes_total{") && l.contains(&side))
        .filter(|l| l.contains("result=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// A proxy process, pinned, with its stderr in a log file.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `command` on `core` (through `taskset`); without one, where this process runs.
    fn spawn(command: Command, log: PathBuf, core: Option<usize>) -> anyhow::Result<Self> {
        let mut command = match core {
            Some(core) => {
                let mut pinned = Command::new("taskset");
                pinned
                    .arg("-c")
                    .arg(core.to_string())
                    .arg(command.get_program())
                    .args(command.get_args());
                pinned
            }
            None => command,
        };
        let file = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {:?}", command.get_program()))?;
        Ok(Self { child, log })
    }

    /// The end of its log, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("; {}:\n{tail}", self.log.display())
    }

    /// CPU time (user + system) so far over the process and its children, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let hz = rustix::param::clock_ticks_per_second() as f64;
        self.pids()
            .into_iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // After "pid (comm) ", utime and stime are the 12th and 13th fields.
                let fields: Vec<&str> = stat
                    .rsplit_once(')')
                    .map(|(_, rest)| rest.split_whitespace().collect())
                    .unwrap_or_default();
                let ticks = |i: usize| {
                    fields
                        .get(i)
                        .and_then(|f| f.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                (ticks(11) + ticks(12)) as f64 / hz
            })
            .sum()
    }

    /// The pids to count: this process and its children (nginx's master and worker).
    fn pids(&self) -> Vec<u32> {
        let pid = self.child.id();
        let mut pids = vec![pid];
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        pids
    }

    /// Resident memory now, in KiB, over the process and its children.
    fn rss_kib(&self) -> u64 {
        self.pids()
            .into_iter()
            .map(|p| status_kib(p, "VmRSS:"))
            .sum()
    }

    /// The anonymous part of the resident memory now, in KiB, over the process and its children.
    fn private_kib(&self) -> u64 {
        self.pids()
            .into_iter()
            .map(|p| status_kib(p, "RssAnon:"))
            .sum()
    }

    /// The resident high-water mark, in KiB, over the process and its children.
    fn peak_rss_kib(&self) -> u64 {
        self.pids()
            .into_iter()
            .map(|p| status_kib(p, "VmHWM:"))
            .sum()
    }

    fn stop(mut self) {
        // SIGTERM lets both drain; kill is the fallback.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `/proc/<pid>/status` field in KiB, 0 if unreadable.
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn find_nginx(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    which("nginx")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .context(
            "nginx not found: install Debian's nginx-light (`apt-get install nginx-light`; \
             bench/run does when it runs as root), pass --nginx PATH, or --no-nginx",
        )
}

fn version_of(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            });
            text.trim().to_owned()
        })
        .unwrap_or_default()
}

fn start_nginx(
    nginx: &Path,
    work: &Path,
    upstream: SocketAddr,
    core: Option<usize>,
) -> anyhow::Result<(Server, SocketAddr)> {
    let dir = work.join("nginx");
    let addr = free_port()?;
    // One worker, no access log, kept-alive upstream connections: nginx at its fastest as a
    // plain reverse proxy, the fair counterpart of weft with one worker.
    let server = spawn_nginx(
        nginx,
        &dir,
        &format!(
            r#"    upstream app {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen {addr} reuseport;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"#
        ),
        core,
    )?;
    Ok((server, addr))
}

/// nginx in `dir` with one worker, no access log and `http` (the `http` block's upstreams and
/// servers), in the foreground.
fn spawn_nginx(
    nginx: &Path,
    dir: &Path,
    http: &str,
    core: Option<usize>,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let conf = format!(
        r#"worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path);
    Server::spawn(command, dir.join("stderr.log"), core)
}

fn start_weft(
    proxy: &Path,
    work: &Path,
    name: &str,
    filters: &str,
    upstream: SocketAddr,
    core: Option<usize>,
) -> anyhow::Result<(Server, SocketAddr)> {
    let addr = free_port()?;
    let config = proxy_config(&addr.to_string(), upstream, filters);
    let server = spawn_weft(proxy, work, name, &config, core)?;
    Ok((server, addr))
}

/// `weft-proxy --workers 1` with `config` in `work/<name>/weft.yaml`.
fn spawn_weft(
    proxy: &Path,
    work: &Path,
    name: &str,
    config: &str,
    core: Option<usize>,
) -> anyhow::Result<Server> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("weft.yaml");
    std::fs::write(&path, config)?;
    let mut command = Command::new(proxy);
    command.arg("--config").arg(&path).arg("--workers").arg("1");
    // The log lives outside the config's directory, which the proxy watches for changes.
    Server::spawn(command, work.join(format!("{name}.log")), core)
}

/// `weft-svc`: weft with one outbound route by authority (`Host: bench`, the load's), to the
/// service `bench` (namespace `default`) that `weft-controlplane` discovers from a `Service`
/// file: three endpoints (one upstream thread on three ports), least-request, two retries on connect
/// failure, reset and 502/503/504 (none happens). Measured against `weft-0`.
fn start_weft_discovered(
    proxy: &Path,
    controlplane: &Path,
    work: &Path,
    core: Option<usize>,
) -> anyhow::Result<Subject> {
    let dir = work.join("weft-svc-controlplane");
    let services = dir.join("services");
    std::fs::create_dir_all(&services)?;
    // Three endpoints served by one upstream thread, as weft-0's one endpoint is: the
    // machine's work besides the proxy stays the same.
    let upstream = BytesUpstream::start_many(3, BODY_LEN)?;
    let mut endpoints = String::new();
    for addr in upstream.addrs() {
        let _ = writeln!(endpoints, "    - {{ address: \"{addr}\" }}");
    }
    std::fs::write(
        services.join("bench.yaml"),
        format!(
            "apiVersion: weft.dev/v1alpha1\nkind: Service\nmetadata: {{ name: bench, namespace: default }}\n\
             spec:\n  ports: [{{ name: http, port: 80, protocol: http1 }}]\n  endpoints:\n{endpoints}\
             \x20 trafficPolicy: {{ load_balancer: least_request, retries: {{ attempts: 2 }} }}\n"
        ),
    )?;
    let (cp_addr, cp_admin) = (free_port()?, free_port()?);
    let mut command = Command::new(controlplane);
    command
        .arg("--source")
        .arg(format!("dir={}", services.display()))
        .arg("--listen")
        .arg(cp_addr.to_string())
        .arg("--admin")
        .arg(cp_admin.to_string());
    // Idle once the proxy has its services: not pinned to the proxy's core.
    let cp = Server::spawn(command, work.join("weft-svc-controlplane.log"), None)?;

    let (addr, admin) = (free_port()?, free_port()?);
    let state = dir.join("proxy-state");
    let config = format!(
        r#"admin: {{ address: "{admin}" }}
listeners:
  - name: outbound
    address: "{addr}"
    direction: outbound
    filters: []
    routes:
      - name: mesh
        match: {{ path: {{ prefix: / }} }}
        by_authority: true
upstreams: []
control_plane: {{ address: "http://{cp_addr}", name: svc, namespace: default, state_dir: {state:?} }}
discovery: {{ namespaces: [default] }}
"#
    );
    let server = spawn_weft(proxy, work, "weft-svc", &config, core)?;
    let mut subject = Subject::new(
        "weft-svc",
        "weft, no filters, 1 worker, by authority to a discovered service (3 endpoints, \
         least-request, retries on)"
            .into(),
        addr,
        Some(server),
    );
    subject.admins.push(admin);
    subject.helpers.push(cp);
    subject.upstreams = vec![upstream];
    Ok(subject)
}

/// The mesh's certificate authority: `weft-controlplane` with an identity directory and
/// bootstrap tokens for A (`shop/orders`) and B (`shop/reviews`).
struct Mesh {
    server: Server,
    /// Its gRPC address, for the proxies' `control_plane.address`.
    addr: SocketAddr,
    /// Where it writes `ca.pem` and `ca-key.pem`.
    ca_dir: PathBuf,
    /// The files holding A's and B's bootstrap tokens.
    tokens: [PathBuf; 2],
}

fn start_control_plane(binary: &Path, work: &Path) -> anyhow::Result<Mesh> {
    let dir = work.join("controlplane");
    let filters = dir.join("filters"); // none: the pair runs no filters
    std::fs::create_dir_all(&filters)?;
    let ca_dir = dir.join("ca");
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut bootstrap = String::new();
    let mut tokens = Vec::new();
    for (hop, service_account) in [("a", "orders"), ("b", "reviews")] {
        let token = format!("bench-{hop}-{nonce:x}-{}", std::process::id());
        let _ = writeln!(bootstrap, "{token} {NAMESPACE}/{service_account}");
        let path = dir.join(format!("token-{hop}"));
        std::fs::write(&path, &token)?;
        tokens.push(path);
    }
    let bootstrap_file = dir.join("bootstrap-tokens");
    std::fs::write(&bootstrap_file, bootstrap)?;
    let addr = free_port()?;
    let admin = free_port()?;
    let mut command = Command::new(binary);
    command
        .arg("--source")
        .arg(format!("dir={}", filters.display()))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--admin")
        .arg(admin.to_string())
        .arg("--identity-dir")
        .arg(&ca_dir)
        .arg("--trust-domain")
        .arg(TRUST_DOMAIN)
        .arg("--certificate-lifetime")
        .arg("24h")
        .arg("--bootstrap-tokens")
        .arg(&bootstrap_file);
    // Not pinned to the proxies' core: it inherits this process's (the load's), where it
    // idles once it has issued the two certificates.
    let server = Server::spawn(command, work.join("controlplane.log"), None)?;
    let tokens: [PathBuf; 2] = tokens.try_into().expect("two tokens");
    Ok(Mesh {
        server,
        addr,
        ca_dir,
        tokens,
    })
}

/// weft A (an outbound listener, its upstream B) and weft B (an inbound listener, its upstream
/// the real one); with `mesh`, A connects to B over mTLS with its workload certificate
/// (`orders`), B's listener is strict (`reviews`). Each runs one worker; A is pinned to the
/// proxy core, B to the peer core.
fn start_weft_pair(
    proxy: &Path,
    work: &Path,
    name: &'static str,
    mesh: Option<Mesh>,
    upstream: SocketAddr,
    pinning: Option<Pinning>,
) -> anyhow::Result<Subject> {
    let (a_addr, b_addr) = (free_port()?, free_port()?);
    let (a_admin, b_admin) = (free_port()?, free_port()?);
    let identity = |hop: &str, service_account: &str, token: &Path| match &mesh {
        None => String::new(),
        Some(mesh) => {
            // Outside the config's directory, which the proxy watches.
            let state = work.join(format!("{name}-{hop}-state"));
            format!(
                "control_plane: {{ address: \"http://{}\", name: {hop}, namespace: {NAMESPACE}, state_dir: {state:?} }}\n\
                 identity: {{ service_account: {service_account}, token_file: {token:?} }}\n",
                mesh.addr
            )
        }
    };
    let (a_identity, b_identity) = match &mesh {
        Some(m) => (
            identity("a", "orders", &m.tokens[0]),
            identity("b", "reviews", &m.tokens[1]),
        ),
        None => (String::new(), String::new()),
    };
    let (upstream_tls, listener_tls) = if mesh.is_some() {
        (
            format!(
                "    tls: {{ mode: mesh, identity: \"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/reviews\" }}\n"
            ),
            "    tls: { mode: strict }\n".to_owned(),
        )
    } else {
        (String::new(), String::new())
    };
    let a_config = format!(
        r#"admin: {{ address: "{a_admin}" }}
{a_identity}listeners:
  - name: outbound
    address: "{a_addr}"
    direction: outbound
    routes:
      - name: peer
        match: {{ path: {{ prefix: / }} }}
        upstream: peer
upstreams:
  - name: peer
    endpoints: ["{b_addr}"]
{upstream_tls}"#
    );
    let b_config = format!(
        r#"admin: {{ address: "{b_admin}" }}
{b_identity}listeners:
  - name: inbound
    address: "{b_addr}"
{listener_tls}    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#
    );
    let b = spawn_weft(
        proxy,
        work,
        &format!("{name}-b"),
        &b_config,
        pinning.map(|p| p.peer_core),
    )?;
    let a = spawn_weft(
        proxy,
        work,
        &format!("{name}-a"),
        &a_config,
        pinning.map(|p| p.proxy_core),
    )?;
    let what = if mesh.is_some() {
        "weft A → weft B over mesh mTLS (workload certificates from weft-controlplane, ECDSA P-256; B's listener strict, A checks B's SPIFFE ID), 1 worker each"
    } else {
        "weft A → weft B, plaintext, 1 worker each"
    };
    let mut subject = Subject::new(name, what.into(), a_addr, Some(a));
    subject.peer = Some(b);
    subject.peer_addr = Some(b_addr);
    subject.admins = vec![a_admin, b_admin];
    if let Some(mesh) = mesh {
        subject.mesh_ca = Some(mesh.ca_dir);
        subject.helpers.push(mesh.server);
    }
    Ok(subject)
}

/// nginx A (`proxy_pass https://B` with a client certificate, B's verified, sessions reused,
/// upstream keepalive) and nginx B (`ssl_verify_client on`, then the upstream), with a CA and
/// certificates made here like the mesh's.
fn start_nginx_pair(
    nginx: &Path,
    work: &Path,
    upstream: SocketAddr,
    pinning: Option<Pinning>,
) -> anyhow::Result<Subject> {
    let name = "nginx-pair-tls";
    let pki = work.join(format!("{name}-pki"));
    std::fs::create_dir_all(&pki)?;
    let (ca_pem, issuer) = certificate_authority("weft-bench nginx CA")?;
    let ca = pki.join("ca.pem");
    std::fs::write(&ca, &ca_pem)?;
    let mut files = Vec::new();
    for (hop, service_account, dns) in [
        ("a", "orders", "orders.shop.svc"),
        ("b", "reviews", PEER_DNS_NAME),
    ] {
        let (cert, key) = leaf_certificate(&issuer, service_account, Some(dns))?;
        let (cert_path, key_path) = (
            pki.join(format!("{hop}.pem")),
            pki.join(format!("{hop}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        files.push((cert_path, key_path));
    }
    let [(a_cert, a_key), (b_cert, b_key)] = [files[0].clone(), files[1].clone()];
    let (a_addr, b_addr) = (free_port()?, free_port()?);
    let (ca, a_cert, a_key, b_cert, b_key) = (
        ca.display(),
        a_cert.display(),
        a_key.display(),
        b_cert.display(),
        b_key.display(),
    );
    // nginx 1.22 leaves TLS 1.3 out of its default protocols: both sides name it, so that the
    // pair speaks what weft's does.
    let b = spawn_nginx(
        nginx,
        &work.join(format!("{name}-b")),
        &format!(
            r#"    upstream app {{
        server {upstream};
        keepalive 64;
    }}
    ssl_session_cache shared:bench:10m;
    server {{
        listen {b_addr} ssl reuseport;
        keepalive_requests 1000000;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_certificate {b_cert};
        ssl_certificate_key {b_key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        ssl_verify_depth 2;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"#
        ),
        pinning.map(|p| p.peer_core),
    )?;
    let a = spawn_nginx(
        nginx,
        &work.join(format!("{name}-a")),
        &format!(
            r#"    upstream peer {{
        server {b_addr};
        keepalive 64;
    }}
    server {{
        listen {a_addr} reuseport;
        keepalive_requests 1000000;
        location / {{
            proxy_pass https://peer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_certificate {a_cert};
            proxy_ssl_certificate_key {a_key};
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_verify on;
            proxy_ssl_verify_depth 2;
            proxy_ssl_name {PEER_DNS_NAME};
            proxy_ssl_session_reuse on;
        }}
    }}
"#
        ),
        pinning.map(|p| p.proxy_core),
    )?;
    let mut subject = Subject::new(
        name,
        "nginx A → nginx B over mTLS (proxy_ssl_certificate, proxy_ssl_verify, session reuse, upstream keepalive; B ssl_verify_client on; ECDSA P-256), 1 worker each".into(),
        a_addr,
        Some(a),
    );
    subject.peer = Some(b);
    subject.peer_addr = Some(b_addr);
    let (chain, key) = {
        let (cert, key) = leaf_certificate(&issuer, "bench", None)?;
        (vec![cert.der().clone()], key.serialize_der())
    };
    subject.handshake = Some(HandshakeTarget {
        addr: b_addr,
        server: "nginx B (ssl_verify_client on)",
        roots: Arc::new(roots(&ca_pem)?),
        chain,
        key,
    });
    Ok(subject)
}

/// A self-signed CA as the mesh's: ECDSA P-256, path length 1. Its PEM, and its issuer.
fn certificate_authority(common_name: &str) -> anyhow::Result<(String, Issuer<'static, KeyPair>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weft-bench");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(7 * 24 * 3600)).into();
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// A workload certificate as the mesh issues them (ECDSA P-256, the URI SAN
/// `spiffe://cluster.local/ns/shop/sa/<service_account>`, server and client auth), with a DNS
/// SAN for nginx's name check when given.
fn leaf_certificate(
    issuer: &Issuer<'_, KeyPair>,
    service_account: &str,
    dns: Option<&str>,
) -> anyhow::Result<(rcgen::Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params =
        CertificateParams::new(dns.map(str::to_owned).into_iter().collect::<Vec<_>>())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, dns.unwrap_or(service_account));
    params.distinguished_name = dn;
    params.subject_alt_names.push(SanType::URI(
        format!("spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{service_account}").try_into()?,
    ));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(24 * 3600)).into();
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert, key))
}

fn roots(ca_pem: &str) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    Ok(roots)
}

/// A TLS server whose handshakes are measured (B of a TLS pair), and a client identity it
/// accepts.
struct HandshakeTarget {
    addr: SocketAddr,
    server: &'static str,
    roots: Arc<RootCertStore>,
    /// The client's certificate chain and PKCS#8 key.
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl HandshakeTarget {
    /// weft B's strict listener, with a client certificate (`sa/bench`) that the bench signs
    /// with the control plane's CA files, the only anchor B trusts.
    fn mesh(ca_dir: &Path, addr: SocketAddr) -> anyhow::Result<Self> {
        let read = |file: &str| {
            let path = ca_dir.join(file);
            std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
        };
        let ca_pem = read("ca.pem")?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&read("ca-key.pem")?)?)?;
        let (cert, key) = leaf_certificate(&issuer, "bench", None)?;
        Ok(Self {
            addr,
            server: "weft B (tls.mode: strict)",
            roots: Arc::new(roots(&ca_pem)?),
            chain: vec![cert.der().clone()],
            key: key.serialize_der(),
        })
    }

    /// A client configuration of its own: a resumption cache that starts empty, or none.
    fn client_config(&self, resume: bool) -> anyhow::Result<Arc<ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: self.roots.clone(),
                provider,
            }))
            .with_client_auth_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone().into()),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resume {
            config.resumption = Resumption::disabled();
        }
        Ok(Arc::new(config))
    }
}

/// Verifies the server's chain to the anchors and not its name: weft's workload certificates
/// carry only a SPIFFE ID. (The client's cost is not what is measured.)
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_server_cert_signed_by_trust_anchor(
            &ParsedCertificate::try_from(end_entity)?,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One kind of handshake (full or resumed) against one server in one round.
#[derive(Debug, Clone, Serialize)]
struct HandshakeRun {
    handshakes: u64,
    /// Of them, those the server resumed.
    resumed: u64,
    errors: u64,
    /// The server's CPU time (user + system, all threads and processes) per handshake.
    server_cpu_us: f64,
    /// The client's wall time per connection (connect to close), this side's cost included.
    wall_us: f64,
    /// Protocol, cipher suite and key exchange, as rustls names them.
    negotiated: String,
}

#[derive(Debug, Clone, Serialize)]
struct HandshakeRound {
    full: HandshakeRun,
    resumed: HandshakeRun,
}

/// `n` connections to `target` one after the other, each a handshake then a close, with the
/// server's CPU time over them. `resume`: one client configuration whose session cache the
/// handshakes share, primed by handshakes that are not counted; else no cache, every
/// handshake full.
fn measure_handshakes(
    target: &HandshakeTarget,
    server: &Server,
    n: usize,
    resume: bool,
) -> anyhow::Result<HandshakeRun> {
    let config = target.client_config(resume)?;
    // Warm-up, not counted: the server's first connections, and tickets to resume with.
    let mut negotiated = String::new();
    for _ in 0..10 {
        negotiated = handshake(&config, target.addr)
            .with_context(|| format!("a handshake with {} at {}", target.server, target.addr))?
            .1;
    }
    let mut run = HandshakeRun {
        handshakes: n as u64,
        resumed: 0,
        errors: 0,
        server_cpu_us: 0.0,
        wall_us: 0.0,
        negotiated,
    };
    let cpu_before = server.cpu_seconds();
    let started = Instant::now();
    for _ in 0..n {
        match handshake(&config, target.addr) {
            Ok((HandshakeKind::Resumed, _)) => run.resumed += 1,
            Ok(_) => {}
            Err(_) => run.errors += 1,
        }
    }
    let n = n.max(1) as f64;
    run.wall_us = micros(started.elapsed()) / n;
    run.server_cpu_us = (server.cpu_seconds() - cpu_before) * 1e6 / n;
    Ok(run)
}

/// Connects, completes a handshake, sends close_notify, and reads until the server closes
/// (taking in its session tickets). The kind of handshake, and what was negotiated.
fn handshake(
    config: &Arc<ClientConfig>,
    addr: SocketAddr,
) -> anyhow::Result<(HandshakeKind, String)> {
    let name = ServerName::try_from(PEER_DNS_NAME)?;
    let mut tls = ClientConnection::new(config.clone(), name)?;
    let mut tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    while tls.is_handshaking() {
        tls.complete_io(&mut tcp)?;
    }
    let kind = tls.handshake_kind().context("no handshake kind")?;
    let negotiated = format!(
        "{:?}, {:?}, {:?}",
        tls.protocol_version(),
        tls.negotiated_cipher_suite().map(|s| s.suite()),
        tls.negotiated_key_exchange_group().map(|g| g.name()),
    )
    .replace("Some(", "")
    .replace(')', "");
    tls.send_close_notify();
    while tls.wants_write() {
        tls.write_tls(&mut tcp)?;
    }
    loop {
        match tls.read_tls(&mut tcp) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tls.process_new_packets().is_err() {
                    break;
                }
            }
        }
    }
    Ok((kind, negotiated))
}

/// One target's figures in one round.
#[derive(Debug, Clone, Copy, Serialize)]
struct RoundResult {
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    /// The generator's own lag at p99 (included in the latencies).
    lag_p99_us: f64,
    latency_requests: u64,
    latency_errors: u64,
    rps: f64,
    /// The proxy's CPU time (user + system, all its threads and processes) over the closed
    /// loop, per request: steadier than requests/s on a noisy machine.
    cpu_us_per_request: Option<f64>,
    /// A pair's CPU per request, A's and B's (their sum is `cpu_us_per_request`).
    hop_cpu_us_per_request: Option<[f64; 2]>,
    throughput_errors: u64,
}

/// The load generator's own lag at p99 above which a round's latency is set aside.
const STALL_US: f64 = 1000.0;

impl RoundResult {
    /// Whether the machine stalled during the latency run: at 1,000 requests/s on its own
    /// core the load generator is idle almost all the time, so being more than a millisecond
    /// late for 1 % of its sends means the machine (a noisy VM) stopped, not the proxy. A stall
    /// of the proxy alone does not show here, and stays in the figures.
    fn disturbed(&self) -> bool {
        self.lag_p99_us > STALL_US
    }
}

/// Resident memory of one proxy.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Memory {
    idle_kib: u64,
    /// Of `idle_kib`, the anonymous (private) part: what each more proxy on a machine adds,
    /// since the binary's and the modules' code pages are shared through the page cache.
    idle_private_kib: u64,
    /// The highest RSS sampled right after a round's runs.
    load_kib: u64,
    /// Of `load_kib`, the anonymous part (the highest sampled).
    load_private_kib: u64,
    /// The kernel's high-water mark.
    peak_kib: u64,
}

impl Memory {
    /// After a run: keeps the highest under-load figures.
    fn sample(&mut self, server: &Server) {
        self.load_kib = self.load_kib.max(server.rss_kib());
        self.load_private_kib = self.load_private_kib.max(server.private_kib());
        self.peak_kib = self.peak_kib.max(server.peak_rss_kib());
    }
}

/// A median with the smallest and largest of the rounds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => values[n / 2],
            _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
        };
        Self {
            median,
            min: values.first().copied().unwrap_or(f64::NAN),
            max: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    name: &'static str,
    what: String,
    /// The rounds the latency figures come from: those the machine did not stall in
    /// ([`RoundResult::disturbed`]), or all of them when every round was disturbed.
    latency_rounds: usize,
    p50_us: Spread,
    p90_us: Spread,
    p99_us: Spread,
    rps: Spread,
    cpu_us_per_request: Option<Spread>,
    /// A pair's CPU per request: A's, then B's.
    hop_cpu_us_per_request: Option<[Spread; 2]>,
    /// Latency added over direct, medians subtracted.
    added_p50_us: Option<f64>,
    added_p90_us: Option<f64>,
    added_p99_us: Option<f64>,
    rps_vs_direct: Option<f64>,
    rps_vs_nginx: Option<f64>,
    errors: u64,
    /// The proxy's (A's, for a pair).
    memory: Option<Memory>,
    /// B's, for a pair.
    peer_memory: Option<Memory>,
    rounds: Vec<RoundResult>,
}

/// One TLS server's handshake cost over the rounds.
#[derive(Debug, Serialize)]
struct HandshakeSummary {
    /// The pair whose B it is.
    target: &'static str,
    server: &'static str,
    negotiated: String,
    full_cpu_us: Spread,
    resumed_cpu_us: Spread,
    full_wall_us: Spread,
    resumed_wall_us: Spread,
    /// Of the handshakes meant to resume, the share that did.
    resumed_share: f64,
    errors: u64,
    rounds: Vec<HandshakeRound>,
}

#[derive(Debug, Serialize)]
struct Report {
    taken: String,
    machine: String,
    pinning: Option<Pinning>,
    nginx: Option<String>,
    rounds: usize,
    rate: u32,
    latency_seconds: f64,
    latency_connections: usize,
    throughput_seconds: f64,
    throughput_connections: usize,
    body_bytes: usize,
    smoke: bool,
    targets: Vec<Summary>,
    /// Handshakes of each kind per server and round.
    handshakes_per_run: usize,
    handshakes: Vec<HandshakeSummary>,
}

/// What the rounds measured, by target name.
struct Measured<'a> {
    rounds: BTreeMap<&'a str, Vec<RoundResult>>,
    /// The proxy's memory (A's, for a pair).
    memory: BTreeMap<&'a str, Memory>,
    /// B's memory, for a pair.
    peer_memory: BTreeMap<&'a str, Memory>,
    handshakes: BTreeMap<&'a str, Vec<HandshakeRound>>,
}

impl Report {
    fn new(
        args: &Args,
        machine: String,
        pinning: Option<Pinning>,
        nginx: Option<String>,
        subjects: &[Subject],
        measured: Measured<'_>,
    ) -> Self {
        let Measured {
            mut rounds,
            memory,
            peer_memory,
            mut handshakes,
        } = measured;
        let mut targets: Vec<Summary> = subjects
            .iter()
            .map(|s| {
                let r = rounds.remove(s.name).unwrap_or_default();
                let spread = |f: fn(&RoundResult) -> f64| Spread::of(r.iter().map(f).collect());
                // Latency comes from the rounds the machine did not stall in (if any).
                let clean: Vec<&RoundResult> = r.iter().filter(|r| !r.disturbed()).collect();
                let latency_rounds: Vec<&RoundResult> = if clean.is_empty() {
                    r.iter().collect()
                } else {
                    clean
                };
                let latency = |f: fn(&RoundResult) -> f64| {
                    Spread::of(latency_rounds.iter().map(|r| f(r)).collect())
                };
                Summary {
                    name: s.name,
                    what: s.what.clone(),
                    latency_rounds: latency_rounds.len(),
                    p50_us: latency(|r| r.p50_us),
                    p90_us: latency(|r| r.p90_us),
                    p99_us: latency(|r| r.p99_us),
                    rps: spread(|r| r.rps),
                    cpu_us_per_request: r
                        .iter()
                        .map(|r| r.cpu_us_per_request)
                        .collect::<Option<Vec<f64>>>()
                        .filter(|v| !v.is_empty())
                        .map(Spread::of),
                    hop_cpu_us_per_request: r
                        .iter()
                        .map(|r| r.hop_cpu_us_per_request)
                        .collect::<Option<Vec<[f64; 2]>>>()
                        .filter(|v| !v.is_empty())
                        .map(|v| {
                            [0, 1].map(|hop| Spread::of(v.iter().map(|cpu| cpu[hop]).collect()))
                        }),
                    added_p50_us: None,
                    added_p90_us: None,
                    added_p99_us: None,
                    rps_vs_direct: None,
                    rps_vs_nginx: None,
                    errors: r
                        .iter()
                        .map(|r| r.latency_errors + r.throughput_errors)
                        .sum(),
                    memory: memory.get(s.name).copied(),
                    peer_memory: peer_memory.get(s.name).copied(),
                    rounds: r,
                }
            })
            .collect();
        let handshakes = subjects
            .iter()
            .filter_map(|s| {
                let server = s.handshake.as_ref()?.server;
                let r = handshakes.remove(s.name).filter(|r| !r.is_empty())?;
                let spread = |f: fn(&HandshakeRound) -> f64| Spread::of(r.iter().map(f).collect());
                let resumed: u64 = r.iter().map(|r| r.resumed.resumed).sum();
                let attempted: u64 = r.iter().map(|r| r.resumed.handshakes).sum();
                Some(HandshakeSummary {
                    target: s.name,
                    server,
                    negotiated: r[0].full.negotiated.clone(),
                    full_cpu_us: spread(|r| r.full.server_cpu_us),
                    resumed_cpu_us: spread(|r| r.resumed.server_cpu_us),
                    full_wall_us: spread(|r| r.full.wall_us),
                    resumed_wall_us: spread(|r| r.resumed.wall_us),
                    resumed_share: resumed as f64 / attempted.max(1) as f64,
                    errors: r.iter().map(|r| r.full.errors + r.resumed.errors).sum(),
                    rounds: r,
                })
            })
            .collect();
        let base = |name: &str| {
            targets
                .iter()
                .find(|t| t.name == name && !t.rounds.is_empty())
                .map(|t| {
                    (
                        t.p50_us.median,
                        t.p90_us.median,
                        t.p99_us.median,
                        t.rps.median,
                    )
                })
        };
        let direct = base("direct");
        let nginx_base = base("nginx");
        for t in &mut targets {
            if t.rounds.is_empty() {
                continue;
            }
            if let Some((p50, p90, p99, rps)) = direct {
                t.added_p50_us = Some(t.p50_us.median - p50);
                t.added_p90_us = Some(t.p90_us.median - p90);
                t.added_p99_us = Some(t.p99_us.median - p99);
                t.rps_vs_direct = Some(t.rps.median / rps);
            }
            if let Some((.., rps)) = nginx_base {
                t.rps_vs_nginx = Some(t.rps.median / rps);
            }
        }
        Self {
            taken: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            machine,
            pinning,
            nginx,
            rounds: args.rounds,
            rate: args.rate,
            latency_seconds: args.latency_time.as_secs_f64(),
            latency_connections: args.latency_connections,
            throughput_seconds: args.throughput_time.as_secs_f64(),
            throughput_connections: args.throughput_connections,
            body_bytes: BODY_LEN,
            smoke: args.smoke,
            targets,
            handshakes_per_run: args.handshakes,
            handshakes,
        }
    }

    fn target(&self, name: &str) -> Option<&Summary> {
        self.targets.iter().find(|t| t.name == name)
    }

    /// `a`'s CPU per request over `b`'s, round by round (the targets of a round ran minutes
    /// apart, so a drift of the machine cancels out): median and range.
    fn cpu_ratio_by_round(&self, a: &str, b: &str) -> Option<Spread> {
        let (a, b) = (self.target(a)?, self.target(b)?);
        let ratios = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(a, b)| Some(a.cpu_us_per_request? / b.cpu_us_per_request?))
            .collect::<Option<Vec<f64>>>()?;
        (!ratios.is_empty()).then(|| Spread::of(ratios))
    }

    /// The section on the sidecar pairs and the handshakes, when they were measured.
    fn pairs_markdown(&self, md: &mut String) {
        let pairs: Vec<&Summary> = self
            .targets
            .iter()
            .filter(|t| PAIRS.contains(&t.name) && !t.rounds.is_empty())
            .collect();
        if pairs.is_empty() && self.handshakes.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\n## mTLS sidecar pair\n\nclient → proxy A → proxy B → upstream, each proxy with one worker, \
             measured in the same rounds and runs as the targets above. `pair-plain`: weft A (an \
             outbound listener) → weft B (an inbound listener), plaintext. `pair-mtls`: the same, \
             A → B over mesh mTLS: workload certificates (ECDSA P-256, SPIFFE IDs \
             `spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/orders` and `…/reviews`) from \
             `weft-controlplane`, B's listener `tls: {{ mode: strict }}`, A checking B's identity. \
             `nginx-pair-tls`: nginx A `proxy_pass https://B` with a client certificate, B's \
             verified (`proxy_ssl_verify on`), `proxy_ssl_session_reuse on`, kept-alive upstream \
             connections; nginx B `ssl_verify_client on` — same key type, TLS 1.3 on both. {} \
             CPU: each process's user + system time over the closed loop, per request served. \
             The ratios are taken round by round (the targets of a round ran minutes apart), \
             median and range.\n",
            match self.pinning {
                Some(p) if p.peer_core != p.proxy_core => format!(
                    "A is pinned to core {}, B to core {}, the load to core {}.",
                    p.proxy_core, p.peer_core, p.load_core
                ),
                Some(p) => format!(
                    "A and B share core {} (two cores: the load keeps core {} to itself, and a \
                     pair's cost is its two hops on one core).",
                    p.proxy_core, p.load_core
                ),
                None => "Nothing is pinned.".to_owned(),
            }
        );
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "–".to_owned(), f);
        let ratio = |x: f64| format!("{x:.2}×");
        let one = |x: f64| format!("{x:.1}");
        if !pairs.is_empty() {
            let _ = writeln!(
                md,
                "| target | requests/s | CPU µs/request A | B | A+B | A+B × pair-plain | A+B × nginx-pair-tls | errors |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            for t in &pairs {
                let versus = |other: &str| {
                    self.cpu_ratio_by_round(t.name, other)
                        .filter(|_| t.name != other)
                        .map_or_else(|| "–".to_owned(), |s| spread(s, ratio))
                };
                let hop = |i: usize| {
                    t.hop_cpu_us_per_request
                        .map_or_else(|| "–".to_owned(), |h| spread(h[i], one))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    t.name,
                    spread(t.rps, |x| format!("{x:.0}")),
                    hop(0),
                    hop(1),
                    t.cpu_us_per_request
                        .map_or_else(|| "–".to_owned(), |s| spread(s, one)),
                    versus("pair-plain"),
                    versus("nginx-pair-tls"),
                    t.errors,
                );
            }
            let _ = writeln!(
                md,
                "\nMemory (resident set, as above; nginx counts master and worker):\n"
            );
            let _ = writeln!(
                md,
                "| target | A idle MiB | B idle MiB | A under load MiB | B under load MiB | A peak MiB | B peak MiB | A+B peak MiB |"
            );
            let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
            let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
            for t in &pairs {
                if let (Some(a), Some(b)) = (t.memory, t.peer_memory) {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {} | {} | {} | {} | {} | {} |",
                        t.name,
                        mib(a.idle_kib),
                        mib(b.idle_kib),
                        mib(a.load_kib),
                        mib(b.load_kib),
                        mib(a.peak_kib),
                        mib(b.peak_kib),
                        mib(a.peak_kib + b.peak_kib),
                    );
                }
            }
        }
        if !self.handshakes.is_empty() {
            let _ = writeln!(
                md,
                "\n### Handshakes: what B's side costs\n\n{} connections of each kind per server and round, \
                 one after another from a rustls client on the load's core, each: TCP connect, the mTLS \
                 handshake (the client presents a certificate of B's CA with \
                 `spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/bench`), close_notify, close — no request. \
                 Full: no session cache. Resumed: one client whose session cache the handshakes share \
                 (primed by uncounted ones). CPU: the server's user + system time per handshake; wall: \
                 the client's time per connection, both sides' work included.\n",
                self.handshakes_per_run
            );
            let _ = writeln!(
                md,
                "| server | negotiated | full: CPU µs | resumed: CPU µs | full × nginx | resumed × nginx | resumed | wall µs full / resumed | errors |"
            );
            let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
            let nginx = self
                .handshakes
                .iter()
                .find(|h| h.target == "nginx-pair-tls");
            let us = |x: f64| format!("{x:.0}");
            for h in &self.handshakes {
                let versus = |f: fn(&HandshakeSummary) -> f64| {
                    nginx.filter(|n| n.target != h.target).map(|n| f(h) / f(n))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {:.0} % | {} / {} | {} |",
                    h.server,
                    h.negotiated,
                    spread(h.full_cpu_us, us),
                    spread(h.resumed_cpu_us, us),
                    opt(versus(|h| h.full_cpu_us.median), &ratio),
                    opt(versus(|h| h.resumed_cpu_us.median), &ratio),
                    h.resumed_share * 100.0,
                    us(h.full_wall_us.median),
                    us(h.resumed_wall_us.median),
                    h.errors,
                );
            }
        }
    }

    fn markdown(&self, micro: &[(String, f64)]) -> String {
        let mut md = String::new();
        let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "–".to_owned(), f);
        let _ = writeln!(md, "# weft side by side: no proxy, nginx, weft\n");
        if self.smoke {
            let _ = writeln!(
                md,
                "**Smoke run (1 round, 1 s per run): these figures only show the machinery works.**\n"
            );
        }
        let _ = writeln!(md, "Taken {} on {}.", self.taken, self.machine);
        let _ = writeln!(
            md,
            "{}; every proxy runs one worker. {} rounds, the targets interleaved within each; \
             figures are medians over the rounds with the range (min–max) beside them. \
             Upstream: hyper, {}-byte responses. Requests: `GET /api/orders` with a bearer token, \
             HTTP/1.1, kept-alive connections.{}\n",
            match self.pinning {
                Some(p) => format!(
                    "The load generator and the upstream are pinned to core {}, the proxy to core {}",
                    p.load_core, p.proxy_core
                ),
                None => "Nothing is pinned (fewer than two cores, or no taskset)".to_owned(),
            },
            self.rounds,
            self.body_bytes,
            self.nginx
                .as_ref()
                .map(|v| format!(" nginx: {v}."))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            md,
            "Command: `bench/run` (see [bench/README.md](../README.md)).\n"
        );

        let _ = writeln!(
            md,
            "## Latency at {} requests/s\n\nCorrected for coordinated omission: each request's latency runs from when it was due, \
             over {} connections for {} s per round. \"Added\" is the median minus direct's. \
             A round in which the load generator itself ran more than 1 ms late for 1 % of its sends \
             is one where the machine stalled, not the proxy: its latency is set aside (\"rounds used\").\n",
            self.rate, self.latency_connections, self.latency_seconds
        );
        let _ = writeln!(
            md,
            "| target | p50 µs | p90 µs | p99 µs | added p50 | added p90 | added p99 | rounds used |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
        let us = |x: f64| format!("{x:.0}");
        let signed = |x: f64| format!("{x:+.0}");
        for t in self.targets.iter().filter(|t| !t.rounds.is_empty()) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {}/{} |",
                t.name,
                spread(t.p50_us, us),
                spread(t.p90_us, us),
                spread(t.p99_us, us),
                opt(t.added_p50_us.filter(|_| t.name != "direct"), &signed),
                opt(t.added_p90_us.filter(|_| t.name != "direct"), &signed),
                opt(t.added_p99_us.filter(|_| t.name != "direct"), &signed),
                t.latency_rounds,
                t.rounds.len(),
            );
        }
        let _ = writeln!(
            md,
            "\n## Throughput, closed loop\n\n{} connections, each sending its next request when the last reply ends, {} s per round.\n",
            self.throughput_connections, self.throughput_seconds
        );
        let _ = writeln!(
            md,
            "| target | requests/s | × direct | × nginx | proxy CPU µs/request | errors |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        let ratio = |x: f64| format!("{x:.2}");
        for t in self.targets.iter().filter(|t| !t.rounds.is_empty()) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                t.name,
                spread(t.rps, |x| format!("{x:.0}")),
                opt(t.rps_vs_direct, &ratio),
                opt(t.rps_vs_nginx, &ratio),
                t.cpu_us_per_request
                    .map_or_else(|| "–".to_owned(), |s| spread(s, |x| format!("{x:.1}"))),
                t.errors,
            );
        }
        let _ = writeln!(
            md,
            "\n## Memory (resident set)\n\nIdle: after startup and a first request. Under load: the largest RSS sampled right after a run; peak: the kernel's high-water mark. Private: the anonymous part of the RSS (`RssAnon`), what each further proxy on a machine adds — the rest is code mapped from the binary and the compiled modules, shared through the page cache. nginx counts master and worker.\n"
        );
        let _ = writeln!(
            md,
            "| target | idle MiB | idle private MiB | under load MiB | under load private MiB | peak MiB |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
        let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
        // A pair's proxies are rows of their own: `<pair> A`, `<pair> B`.
        let rows = self.targets.iter().flat_map(|t| match t.peer_memory {
            None => vec![t.memory.map(|m| (t.name.to_owned(), m))],
            Some(b) => vec![
                t.memory.map(|a| (format!("{} A", t.name), a)),
                Some((format!("{} B", t.name), b)),
            ],
        });
        for (name, m) in rows.flatten() {
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                mib(m.idle_kib),
                mib(m.idle_private_kib),
                mib(m.load_kib),
                mib(m.load_private_kib),
                mib(m.peak_kib)
            );
        }
        self.pairs_markdown(&mut md);
        let _ = writeln!(md, "\n## Targets\n");
        let _ = writeln!(md, "| goal | measured | met | nginx, for reference |");
        let _ = writeln!(md, "|---|---:|:---:|---:|");
        let mut goal = |what: &str,
                        value: Option<f64>,
                        reference: Option<f64>,
                        shown: &dyn Fn(f64) -> String,
                        ok: &dyn Fn(f64) -> bool| {
            let _ = writeln!(
                md,
                "| {what} | {} | {} | {} |",
                opt(value, shown),
                value.map_or("–", |v| {
                    if v < 0.0 {
                        "inconclusive" // faster than no proxy: the machine was too noisy
                    } else if ok(v) {
                        "yes"
                    } else {
                        "**no**"
                    }
                }),
                opt(reference, shown),
            );
        };
        let four = self.target("weft-4");
        let nginx = self.target("nginx").filter(|t| !t.rounds.is_empty());
        let cpu = |name: &str| {
            self.target(name)
                .and_then(|t| t.cpu_us_per_request)
                .map(|s| s.median)
        };
        let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
        goal(
            "weft-0 CPU per request ≤ 1.0× nginx's",
            ratio(cpu("weft-0"), cpu("nginx")),
            None,
            &|x| format!("{x:.2}×"),
            &|x| x <= 1.0,
        );
        goal(
            "weft-4 CPU per request ≤ 1.3× weft-0's",
            ratio(cpu("weft-4"), cpu("weft-0")),
            None,
            &|x| format!("{x:.2}×"),
            &|x| x <= 1.3,
        );
        if self.target("weft-svc").is_some() {
            goal(
                "weft-svc (discovered service, least-request, retries on) CPU per request ≤ 1.1× weft-0's",
                ratio(cpu("weft-svc"), cpu("weft-0")),
                None,
                &|x| format!("{x:.2}×"),
                &|x| x <= 1.1,
            );
        }
        if self.target("base-0").is_some() {
            goal(
                "weft-0 CPU per request ≤ the baseline's (base-0)",
                ratio(cpu("weft-0"), cpu("base-0")),
                None,
                &|x| format!("{x:.2}×"),
                &|x| x <= 1.0,
            );
            goal(
                "weft-4 CPU per request ≤ the baseline's (base-4)",
                ratio(cpu("weft-4"), cpu("base-4")),
                None,
                &|x| format!("{x:.2}×"),
                &|x| x <= 1.0,
            );
        }
        goal(
            "weft-4 throughput ≥ 1.0× nginx",
            four.and_then(|t| t.rps_vs_nginx),
            nginx.and_then(|t| t.rps_vs_nginx),
            &|x| format!("{x:.2}×"),
            &|x| x >= 1.0,
        );
        goal(
            "weft-4 added p50 ≤ 50 µs",
            four.and_then(|t| t.added_p50_us),
            nginx.and_then(|t| t.added_p50_us),
            &|x| format!("{x:.0} µs"),
            &|x| x <= 50.0,
        );
        goal(
            "weft-4 added p99 ≤ 150 µs",
            four.and_then(|t| t.added_p99_us),
            nginx.and_then(|t| t.added_p99_us),
            &|x| format!("{x:.0} µs"),
            &|x| x <= 150.0,
        );
        // The issue's memory targets are in MB (10^6 bytes).
        let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
        let four_memory = four.and_then(|t| t.memory);
        let nginx_memory = nginx.and_then(|t| t.memory);
        goal(
            "weft-4 idle RSS ≤ 20 MB",
            four_memory.map(|m| mb(m.idle_kib)),
            nginx_memory.map(|m| mb(m.idle_kib)),
            &|x| format!("{x:.1} MB"),
            &|x| x <= 20.0,
        );
        goal(
            "weft-4 RSS under load ≤ 40 MB",
            four_memory.map(|m| mb(m.peak_kib)),
            nginx_memory.map(|m| mb(m.peak_kib)),
            &|x| format!("{x:.1} MB"),
            &|x| x <= 40.0,
        );
        if self.target("pair-mtls").is_some() {
            // Round by round, as in the pair table.
            let by_round = |a: &str, b: &str| self.cpu_ratio_by_round(a, b).map(|s| s.median);
            goal(
                "mTLS pair CPU per request (A+B) ≤ 1.3× the plaintext pair's",
                by_round("pair-mtls", "pair-plain"),
                by_round("nginx-pair-tls", "pair-plain"),
                &|x| format!("{x:.2}×"),
                &|x| x <= 1.3,
            );
            goal(
                "mTLS pair CPU per request (A+B) ≤ nginx doing the same (nginx-pair-tls)",
                by_round("pair-mtls", "nginx-pair-tls"),
                None,
                &|x| format!("{x:.2}×"),
                &|x| x <= 1.0,
            );
        }
        if !micro.is_empty() {
            let _ = writeln!(
                md,
                "\n## Micro-benchmarks (criterion, in-process)\n\nMedian time per iteration, from `cargo bench -p weft-tests`.\n"
            );
            let _ = writeln!(md, "| benchmark | median |");
            let _ = writeln!(md, "|---|---:|");
            for (name, ns) in micro {
                let _ = writeln!(md, "| {name} | {} |", human_ns(*ns));
            }
        }
        md
    }
}

fn spread(s: Spread, f: impl Fn(f64) -> String) -> String {
    if s.min == s.max {
        f(s.median)
    } else {
        format!("{} ({}–{})", f(s.median), f(s.min), f(s.max))
    }
}

fn human_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// CPU model, cores and kernel.
fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_default();
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map(|kib| format!(", {:.0} GiB", kib as f64 / (1024.0 * 1024.0)))
        .unwrap_or_default();
    format!("{model}, {cores} cores{memory}, Linux {kernel}")
}

/// Each criterion benchmark's median (ns) written since `since`, named by its path under
/// `dir` (criterion keeps `<group>/<function>[/<parameter>]/new/estimates.json`).
fn micro_benchmarks(dir: &Path, since: SystemTime) -> Vec<(String, f64)> {
    fn walk(root: &Path, dir: &Path, since: SystemTime, found: &mut Vec<(String, f64)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() || entry.file_name() == "report" {
                continue;
            }
            if entry.file_name() == "new" {
                let estimates = path.join("estimates.json");
                let fresh = std::fs::metadata(&estimates)
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified >= since);
                if !fresh {
                    continue; // From an earlier run, or a bench since removed.
                }
                let median = std::fs::read_to_string(&estimates)
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|v| v["median"]["point_estimate"].as_f64());
                if let (Some(median), Ok(name)) = (median, dir.strip_prefix(root)) {
                    found.push((name.display().to_string(), median));
                }
            } else if entry.file_name() != "base" && entry.file_name() != "change" {
                walk(root, &path, since, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(dir, dir, since, &mut found);
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}
