//! How fast a change on the control plane reaches proxies, and what 1,000 proxies cost it.
//!
//! 1. **File change → one proxy enforcing it:** the directory source and a real proxy
//!    in-process; a definition file is rewritten (new config) 100 times and each time the
//!    clock runs until the proxy serves the new snapshot (swapped in, checked with a request).
//! 2. **File change → N proxies ACKing:** the control plane runs in a child process (this
//!    binary again, `--serve-control-plane`), so its memory can be measured alone; N
//!    lightweight subscribers in this process (one gRPC connection each, hello → snapshot →
//!    fetch the module once → ACK, no wasm compiled) wait for every change. Reported: the time until the last of them
//!    received the new snapshot and sent its ACK, and the control plane's RSS with N
//!    subscribed.
//!
//! Targets (issue 5): p99 ≤ 100 ms to one proxy; ≤ 1 s to 1,000 proxies; ≤ 100 MB RSS at
//! 1,000. Run with `cargo bench -p weft-tests --bench control_plane`.

#![allow(clippy::print_stdout)] // A benchmark reports on stdout.
#![allow(missing_docs)]

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_api::v1::filter_distribution_client::FilterDistributionClient;
use weft_api::v1::{
    FetchModuleRequest, Hello, ProxyIdentity, Report, SubscribeRequest, subscribe_request::Kind,
};
use weft_controlplane::source::dir::DirSource;
use weft_controlplane::{ControlPlane, DEFAULT_ROOT_NAMESPACE, server};
use weft_tests::control_plane::{definition, proxy_section};
use weft_tests::{Upstream, get, guests, start_proxy};

const CHANGES_ONE_PROXY: usize = 100;

fn greeter(greeting: usize) -> String {
    definition(
        "greeter",
        "module.wasm",
        "{ app: bench }",
        &format!("  config:\n    greeting: \"{greeting}\"\n"),
    )
}

/// Rewrite `file` atomically, as config management does.
fn replace(file: &Path, contents: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, contents).expect("write");
    std::fs::rename(&tmp, file).expect("rename");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    format!(
        "median {:.1} ms, p99 {:.1} ms, max {:.1} ms over {}",
        percentile(samples, 0.5).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3,
        samples.len()
    )
}

async fn one_proxy() {
    let defs = tempfile::tempdir().expect("dir");
    std::fs::copy(guests::CONFIG_ECHO, defs.path().join("module.wasm")).expect("module");
    let file = defs.path().join("greeter.yaml");
    replace(&file, &greeter(0));
    let control_plane = ControlPlane::new(DEFAULT_ROOT_NAMESPACE);
    let _source = DirSource::start(defs.path(), control_plane.clone()).expect("source");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let cp = server::serve(&control_plane, listener, None, None)
        .await
        .expect("serve");
    let upstream = Upstream::start().await.expect("upstream");
    let state = tempfile::tempdir().expect("dir");
    let yaml = format!(
        "listeners:\n  - name: inbound\n    address: 127.0.0.1:0\n    routes: [{{ name: app, upstream: app }}]\nupstreams: [{{ name: app, endpoints: [\"{}\"] }}]\n{}",
        upstream.addr(),
        proxy_section(
            &format!("http://{}", cp.local_addr()),
            "bench-0",
            "{ app: bench }",
            state.path(),
            None
        )
    );
    let proxy = start_proxy(&yaml).await.expect("proxy");
    let wait_version = |above: u64| {
        let proxy = &proxy;
        async move {
            while proxy.snapshot_version() <= above {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait_version(0))
        .await
        .expect("the proxy gets its first snapshot");
    let mut samples = Vec::with_capacity(CHANGES_ONE_PROXY);
    for i in 1..=CHANGES_ONE_PROXY {
        let before = proxy.snapshot_version();
        let start = Instant::now();
        replace(&file, &greeter(i));
        tokio::time::timeout(Duration::from_secs(10), wait_version(before))
            .await
            .expect("the change arrives");
        samples.push(start.elapsed());
        let reply = get(proxy.addr(), "/", &[]).await.expect("request");
        assert_eq!(
            reply.header("x-greeting"),
            Some(i.to_string().as_str()),
            "enforced"
        );
        // Changes a few times a second, not a burst the debounce would fold together.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "file change -> 1 proxy enforcing: {}",
        summary(&mut samples)
    );
    cp.shutdown().await;
}

/// The child process: a control plane on a directory, printing its address on stdout.
fn serve_control_plane(dir: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let control_plane = ControlPlane::new(DEFAULT_ROOT_NAMESPACE);
        let _source = DirSource::start(dir, control_plane.clone()).expect("source");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cp = server::serve(&control_plane, listener, None, None)
            .await
            .expect("serve");
        println!("{}", cp.local_addr());
        // Until the parent closes our stdin.
        let _ = tokio::task::spawn_blocking(|| std::io::stdin().lines().count()).await;
        cp.shutdown().await;
    });
}

fn rss_mib(child: &Child) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// One lightweight subscriber: reports each snapshot version it ACKed on `acks`.
async fn subscriber(
    addr: std::net::SocketAddr,
    i: usize,
    acks: mpsc::UnboundedSender<(usize, u64, Instant)>,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = FilterDistributionClient::new(channel)
        .max_decoding_message_size(weft_api::MAX_MESSAGE_BYTES);
    let mut fetcher = client.clone();
    let identity = ProxyIdentity {
        name: format!("sub-{i}"),
        namespace: "default".into(),
        labels: [("app".to_owned(), "bench".to_owned())]
            .into_iter()
            .collect(),
    };
    let mut held = std::collections::HashSet::new();
    let (tx, rx) = mpsc::channel(4);
    tx.send(SubscribeRequest {
        kind: Some(Kind::Hello(Hello {
            identity: Some(identity.clone()),
            module_digests: Vec::new(),
            serving_version: 0,
        })),
    })
    .await?;
    let mut snapshots = client
        .subscribe(ReceiverStream::new(rx))
        .await?
        .into_inner();
    while let Some(snapshot) = snapshots.message().await? {
        for filter in &snapshot.filters {
            if held.insert(filter.module_sha256.clone()) {
                let mut chunks = fetcher
                    .fetch_module(FetchModuleRequest {
                        identity: Some(identity.clone()),
                        sha256: filter.module_sha256.clone(),
                    })
                    .await?
                    .into_inner();
                while chunks.message().await?.is_some() {}
            }
        }
        tx.send(SubscribeRequest {
            kind: Some(Kind::Report(Report {
                version: snapshot.version,
                accepted: true,
                errors: Vec::new(),
                serving_version: snapshot.version,
            })),
        })
        .await?;
        let _ = acks.send((i, snapshot.version, Instant::now()));
    }
    Ok(())
}

async fn many_proxies(n: usize, changes: usize) {
    let defs = tempfile::tempdir().expect("dir");
    std::fs::copy(guests::RATE_LIMIT, defs.path().join("module.wasm")).expect("module");
    let file = defs.path().join("greeter.yaml");
    replace(&file, &greeter(0));
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .args(["--serve-control-plane", &defs.path().display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the control plane");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the control plane's address");
    let addr: std::net::SocketAddr = line.trim().parse().expect("an address");
    let idle_rss = rss_mib(&child);

    let (tx, mut acks) = mpsc::unbounded_channel();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let tx = tx.clone();
        tasks.spawn(async move {
            if let Err(e) = subscriber(addr, i, tx).await {
                eprintln!("subscriber {i}: {e:#}");
            }
        });
        if i % 50 == 49 {
            tokio::task::yield_now().await;
        }
    }
    // Everyone has the first snapshot.
    let mut latest = vec![0u64; n];
    let mut have = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while have < n {
        let (i, version, _) = tokio::time::timeout_at(deadline.into(), acks.recv())
            .await
            .expect("every subscriber gets its first snapshot")
            .expect("subscribers run");
        if latest[i] == 0 {
            have += 1;
        }
        latest[i] = version;
    }
    let subscribed_rss = rss_mib(&child);
    let mut samples = Vec::with_capacity(changes);
    for c in 1..=changes {
        let start = Instant::now();
        replace(&file, &greeter(c));
        let floor = *latest.iter().max().expect("n > 0");
        let mut done = 0;
        let mut last = start;
        while done < n {
            let (i, version, at) = tokio::time::timeout(Duration::from_secs(30), acks.recv())
                .await
                .expect("the change reaches every subscriber")
                .expect("subscribers run");
            if version > floor && latest[i] <= floor {
                done += 1;
                last = last.max(at);
            }
            latest[i] = version;
        }
        samples.push(last - start);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let loaded_rss = rss_mib(&child);
    println!(
        "file change -> {n} proxies all ACKed: {}; control plane RSS {idle_rss:.1} MiB idle, {subscribed_rss:.1} MiB with {n} subscribed, {loaded_rss:.1} MiB after the changes",
        summary(&mut samples)
    );
    drop(child.stdin.take());
    tasks.abort_all();
    let _ = child.wait();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-control-plane") {
        serve_control_plane(&args[i + 1]);
        return;
    }
    // `cargo test --benches` runs benches with `--test`: keep that quick.
    let quick = args.iter().any(|a| a == "--test");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        if quick {
            many_proxies(10, 2).await;
            return;
        }
        one_proxy().await;
        many_proxies(100, 20).await;
        many_proxies(1000, 10).await;
    });
}
