//! `weft-cp-bench`: the control plane's service discovery under load. Starts
//! `weft-controlplane --source dir=...` as its own process on N `Service` files of M endpoints
//! each, opens P `Watch` streams (spread over C HTTP/2 connections), then changes one
//! endpoint at a time and measures how long until every stream has the update; reports
//! p50/p99/max over the changes and the control plane's RSS.
//!
//! Run with `cargo build --release --workspace --bins && target/release/weft-cp-bench`
//! (or `bench/run --discovery-cp`); `--smoke` runs a tiny scale as a check of the machinery.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use weft_tests::discovery::{TestEndpoint, service_yaml, watch_on};

#[derive(Debug, Parser)]
#[command(about = "Service discovery from the control plane under load")]
struct Args {
    /// Services, each a file of the directory source.
    #[arg(long, default_value_t = 1000)]
    services: usize,
    /// Endpoints per service.
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    /// Watching proxies (one `Watch` stream each).
    #[arg(long, default_value_t = 1000)]
    proxies: usize,
    /// HTTP/2 connections the streams are spread over.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Endpoint changes measured.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// A tiny scale (20 services × 3 endpoints, 20 proxies, 3 changes).
    #[arg(long)]
    smoke: bool,
    /// The `weft-controlplane` binary (default: beside this one).
    #[arg(long)]
    controlplane: Option<PathBuf>,
    /// Also write the Markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if args.smoke {
        args.services = 20;
        args.endpoints = 3;
        args.proxies = 20;
        args.connections = 4;
        args.changes = 3;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("weft-cp-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-cp-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The control plane process; killed on drop.
struct ControlPlaneProcess(Child);

impl Drop for ControlPlaneProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn service_file(index: usize, endpoints: usize, first_port: u16) -> String {
    let endpoints: Vec<TestEndpoint> = (0..endpoints)
        .map(|e| {
            let port = if e == 0 {
                first_port
            } else {
                20_000 + e as u16
            };
            TestEndpoint::new(SocketAddr::from((
                [10, (index / 250) as u8, (index % 250) as u8, e as u8 + 1],
                port,
            )))
        })
        .collect();
    service_yaml(
        "bench",
        &format!("svc-{index}"),
        &[("http", 8080)],
        &endpoints,
    )
}

fn write_atomic(dir: &Path, file: &str, contents: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, dir.join(file))?;
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn run(args: Args) -> anyhow::Result<()> {
    let binary = match &args.controlplane {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .with_file_name(format!("weft-controlplane{}", std::env::consts::EXE_SUFFIX)),
    };
    if !binary.is_file() {
        bail!(
            "{} not found: build it (cargo build --release --workspace --bins) or pass --controlplane",
            binary.display()
        );
    }
    let work = tempfile::tempdir()?;
    let dir = work.path().join("services");
    std::fs::create_dir(&dir)?;
    for i in 0..args.services {
        write_atomic(
            &dir,
            &format!("svc-{i}.yaml"),
            &service_file(i, args.endpoints, 20_000),
        )?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log = std::fs::File::create(work.path().join("controlplane.log"))?;
    let child = Command::new(&binary)
        .arg("--source")
        .arg(format!("dir={}", dir.display()))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--admin")
        .arg("127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let process = ControlPlaneProcess(child);
    let pid = process.0.id();

    let start = Instant::now();
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let channel = loop {
            match Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await
            {
                Ok(channel) => break channel,
                Err(_) if start.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e).context("the control plane did not listen within 30s"),
            }
        };
        channels.push(channel);
    }
    let rss_idle = rss_kib(pid)?;

    // Every stream reports (proxy, when, services in the update) and ACKs.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(usize, Instant, Vec<String>)>();
    for proxy in 0..args.proxies {
        let channel = channels[proxy % channels.len()].clone();
        let seen = seen_tx.clone();
        tokio::spawn(async move {
            let name = format!("proxy-{proxy}");
            let Ok(mut watch) = watch_on(channel, ("bench", &name), &[]).await else {
                return;
            };
            while let Ok(update) = watch.next_within(Duration::from_secs(3600)).await {
                let names = update.services.iter().map(|s| s.name.clone()).collect();
                if seen.send((proxy, Instant::now(), names)).is_err()
                    || watch.ack(update.version).await.is_err()
                {
                    return;
                }
            }
        });
    }
    drop(seen_tx);
    let mut full = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while full.len() < args.proxies {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((proxy, _, names))) if names.len() == args.services => {
                full.insert(proxy);
            }
            Ok(Some(_)) => {}
            _ => bail!(
                "only {} of {} proxies got the full set within 120s",
                full.len(),
                args.proxies
            ),
        }
    }
    let connect_all = start.elapsed();
    let rss_watching = rss_kib(pid)?;

    let mut all_received = Vec::new();
    let mut per_proxy = Vec::new();
    for change in 0..args.changes {
        let index = (change * 37) % args.services;
        let target = format!("svc-{index}");
        let contents = service_file(index, args.endpoints, 30_000 + change as u16);
        let t0 = Instant::now();
        write_atomic(&dir, &format!("svc-{index}.yaml"), &contents)?;
        let mut got = HashSet::new();
        let mut last = t0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while got.len() < args.proxies {
            match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
                Ok(Some((proxy, at, names))) if names.contains(&target) => {
                    if got.insert(proxy) {
                        per_proxy.push(at - t0);
                        last = last.max(at);
                    }
                }
                Ok(Some(_)) => {}
                _ => bail!(
                    "change {change}: only {} of {} proxies updated within 30s",
                    got.len(),
                    args.proxies
                ),
            }
        }
        all_received.push(last - t0);
        // Let ACKs settle so that changes do not overlap.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_end = rss_kib(pid)?;
    all_received.sort();
    per_proxy.sort();

    let report = format!(
        "# Control plane: service discovery ({services} services × {endpoints} endpoints, {proxies} proxies)\n\n\
         `weft-cp-bench{smoke}`: `weft-controlplane --source dir=...` as its own process; {proxies} `Watch` streams over \
         {connections} HTTP/2 connections from one client process on the same machine; {changes} changes, \
         each one endpoint of one service (a file rewritten, so the time includes the file watch's \
         15 ms debounce and the rescan of {services} files).\n\n\
         | measure | value |\n|---|---|\n\
         | time until all {proxies} proxies had the change, p50 | {p50} |\n\
         | … p99 | {p99} |\n\
         | … max | {max} |\n\
         | one proxy's update, p50 / p99 (all streams × changes) | {pp50} / {pp99} |\n\
         | connect + full set to all proxies | {connect} |\n\
         | control plane RSS: before streams / all watching / after the changes | {r0} / {r1} / {r2} MiB |\n",
        services = args.services,
        endpoints = args.endpoints,
        proxies = args.proxies,
        connections = channels.len(),
        changes = args.changes,
        smoke = if args.smoke { " --smoke" } else { "" },
        p50 = ms(percentile(&all_received, 50.0)),
        p99 = ms(percentile(&all_received, 99.0)),
        max = ms(all_received.last().copied().unwrap_or_default()),
        pp50 = ms(percentile(&per_proxy, 50.0)),
        pp99 = ms(percentile(&per_proxy, 99.0)),
        connect = ms(connect_all),
        r0 = rss_idle / 1024,
        r1 = rss_watching / 1024,
        r2 = rss_end / 1024,
    );
    std::io::Write::write_all(&mut std::io::stdout().lock(), report.as_bytes())?;
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    drop(process);
    Ok(())
}
