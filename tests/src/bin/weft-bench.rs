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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::Parser;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use weft_tests::bench::{four_filters, hs256_token, noop_filters, proxy_config};
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
    /// weft-16), for profiling one of them.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A quick run to check the machinery (1 round, 1 s each); its figures mean little.
    #[arg(long)]
    smoke: bool,
}

/// Every response's body length: the issue's 1 KiB.
const BODY_LEN: usize = 1024;

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.rounds = 1;
        args.latency_time = Duration::from_secs(1);
        args.throughput_time = Duration::from_secs(1);
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
    process: Option<Server>,
}

fn run(args: &Args) -> anyhow::Result<()> {
    let machine = machine(); // before pinning narrows what this process sees
    let pinning = pin();
    let wanted = |name: &str| {
        args.only.is_empty()
            || args.only.iter().any(|o| o == name)
            || (name.starts_with("base-") && args.baseline.is_some())
    };
    let work = tempfile::tempdir()?;
    let upstream = BytesUpstream::start(BODY_LEN)?;
    eprintln!(
        "upstream on {} ({BODY_LEN}-byte responses)",
        upstream.addr()
    );

    let mut subjects = vec![Subject {
        name: "direct",
        what: "client → upstream, no proxy (the floor)".into(),
        addr: upstream.addr(),
        process: None,
    }];
    let mut nginx_version = None;
    if !args.no_nginx && wanted("nginx") {
        let nginx = find_nginx(args.nginx.as_deref())?;
        nginx_version = Some(version_of(&nginx, "-v"));
        let (server, addr) = start_nginx(&nginx, work.path(), upstream.addr(), pinning)?;
        subjects.push(Subject {
            name: "nginx",
            what: "nginx, plain reverse proxy, 1 worker, upstream keepalive".into(),
            addr,
            process: Some(server),
        });
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
    let baseline: Vec<(&'static str, String, String)> = match &args.baseline {
        None => Vec::new(),
        Some(path) => {
            if !path.is_file() {
                bail!("--baseline {}: no such file", path.display());
            }
            vec![
                (
                    "base-0",
                    " []".into(),
                    format!("the baseline binary ({}), no filters", path.display()),
                ),
                (
                    "base-4",
                    four_filters(),
                    format!(
                        "the baseline binary ({}), the four policy filters",
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
        let binary = match (name.starts_with("base-"), &args.baseline) {
            (true, Some(path)) => path,
            _ => &args.proxy,
        };
        let (server, addr) = start_weft(
            binary,
            work.path(),
            name,
            &filters,
            upstream.addr(),
            pinning,
        )?;
        subjects.push(Subject {
            name,
            what,
            addr,
            process: Some(server),
        });
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
    for (subject, target) in subjects.iter().zip(&targets) {
        wait_until_serving(target).with_context(|| {
            let log = subject
                .process
                .as_ref()
                .map(|server| server.log_tail())
                .unwrap_or_default();
            format!("{} never served correctly{log}", subject.name)
        })?;
        if let Some(server) = &subject.process {
            let m = memory.entry(subject.name).or_default();
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
    for round in 1..=args.rounds {
        for (subject, target) in subjects.iter().zip(&targets) {
            if subject.name == "weft-1" || !wanted(subject.name) {
                continue; // Measured for memory only.
            }
            eprint!(
                "round {round}/{}: {:<8} latency…",
                args.rounds, subject.name
            );
            let lat = load::fixed_rate(target, latency)?;
            eprint!(" throughput…");
            let cpu_before = subject.process.as_ref().map(Server::cpu_seconds);
            let thr = load::closed_loop(
                target,
                args.throughput_connections,
                Duration::from_secs(1).min(args.throughput_time),
                args.throughput_time,
            )?;
            let cpu_us_per_request =
                subject
                    .process
                    .as_ref()
                    .zip(cpu_before)
                    .map(|(server, before)| {
                        (server.cpu_seconds() - before) * 1e6
                            / (thr.requests + thr.warmup_requests).max(1) as f64
                    });
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
                throughput_errors: thr.errors,
            };
            eprintln!(
                " p50 {:.0} µs, p99 {:.0} µs, {:.0} req/s{}",
                result.p50_us,
                result.p99_us,
                result.rps,
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
                let m = memory.entry(subject.name).or_default();
                m.load_kib = m.load_kib.max(server.rss_kib());
                m.load_private_kib = m.load_private_kib.max(server.private_kib());
                m.peak_kib = m.peak_kib.max(server.peak_rss_kib());
            }
            rounds.entry(subject.name).or_default().push(result);
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
        rounds,
        memory,
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
        if let Some(server) = subject.process {
            server.stop();
        }
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

/// A proxy process, pinned, with its stderr in a log file.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(command: Command, log: PathBuf, pinning: Option<Pinning>) -> anyhow::Result<Self> {
        let mut command = match pinning {
            Some(p) => {
                let mut pinned = Command::new("taskset");
                pinned
                    .arg("-c")
                    .arg(p.proxy_core.to_string())
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
    pinning: Option<Pinning>,
) -> anyhow::Result<(Server, SocketAddr)> {
    let dir = work.join("nginx");
    std::fs::create_dir_all(&dir)?;
    let addr = free_port()?;
    let d = dir.display();
    // One worker, no access log, kept-alive upstream connections: nginx at its fastest as a
    // plain reverse proxy, the fair counterpart of weft with one worker.
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
    upstream app {{
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
}}
"#
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path);
    let server = Server::spawn(command, dir.join("stderr.log"), pinning)?;
    Ok((server, addr))
}

fn start_weft(
    proxy: &Path,
    work: &Path,
    name: &str,
    filters: &str,
    upstream: SocketAddr,
    pinning: Option<Pinning>,
) -> anyhow::Result<(Server, SocketAddr)> {
    let dir = work.join(name);
    std::fs::create_dir_all(&dir)?;
    let addr = free_port()?;
    let config = dir.join("weft.yaml");
    std::fs::write(&config, proxy_config(&addr.to_string(), upstream, filters))?;
    let mut command = Command::new(proxy);
    command
        .arg("--config")
        .arg(&config)
        .arg("--workers")
        .arg("1");
    // The log lives outside the config's directory, which the proxy watches for changes.
    let server = Server::spawn(command, work.join(format!("{name}.log")), pinning)?;
    Ok((server, addr))
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
    /// Latency added over direct, medians subtracted.
    added_p50_us: Option<f64>,
    added_p90_us: Option<f64>,
    added_p99_us: Option<f64>,
    rps_vs_direct: Option<f64>,
    rps_vs_nginx: Option<f64>,
    errors: u64,
    memory: Option<Memory>,
    rounds: Vec<RoundResult>,
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
}

impl Report {
    fn new(
        args: &Args,
        machine: String,
        pinning: Option<Pinning>,
        nginx: Option<String>,
        subjects: &[Subject],
        mut rounds: BTreeMap<&str, Vec<RoundResult>>,
        memory: BTreeMap<&str, Memory>,
    ) -> Self {
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
                    rounds: r,
                }
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
        }
    }

    fn target(&self, name: &str) -> Option<&Summary> {
        self.targets.iter().find(|t| t.name == name)
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
        for t in &self.targets {
            if let Some(m) = t.memory {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} |",
                    t.name,
                    mib(m.idle_kib),
                    mib(m.idle_private_kib),
                    mib(m.load_kib),
                    mib(m.load_private_kib),
                    mib(m.peak_kib)
                );
            }
        }
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
