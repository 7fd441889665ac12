//! The benchmark's load generator (`weft_tests::load`) and the side-by-side command
//! (`weft-bench`): the figures they publish are only as good as what is checked here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use weft_tests::load::{self, BytesUpstream, FixedRate, Target};

fn target(addr: SocketAddr, body_len: Option<usize>) -> Target {
    Target {
        addr,
        path: "/".into(),
        headers: Vec::new(),
        body_len,
    }
}

/// An upstream whose `stall_at`-th request (from 1) takes `stall`; the rest answer at once.
fn stalling_upstream(stall_at: usize, stall: Duration) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                let service = hyper::service::service_fn(move |_request| {
                    let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        if n == stall_at {
                            tokio::time::sleep(stall).await;
                        }
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
    });
    addr
}

#[test]
fn a_fixed_rate_run_sends_its_rate_and_measures_each_request() {
    let upstream = BytesUpstream::start(1024).expect("upstream");
    let spec = FixedRate {
        rate: 400,
        duration: Duration::from_secs(1),
        warmup: Duration::from_millis(250),
        connections: 4,
    };
    let latencies = load::fixed_rate(&target(upstream.addr(), Some(1024)), spec).expect("run");
    assert_eq!(latencies.errors, 0);
    assert_eq!(latencies.count(), 400, "rate × duration requests recorded");
    let p50 = latencies.percentile(50.0);
    assert!(
        p50 > Duration::ZERO && p50 < Duration::from_millis(20),
        "a local 1 KiB reply: {p50:?}"
    );
    assert!(latencies.percentile(50.0) <= latencies.percentile(99.0));
}

#[test]
fn latency_counts_the_wait_of_requests_queued_behind_a_stall() {
    // One connection at 100 requests/s: request 50 stalls 300 ms, and the ~30 requests due
    // meanwhile leave late. Measured from when they were due, they all show the stall; measured
    // from when they left (the coordinated-omission mistake), only one would.
    let addr = stalling_upstream(50, Duration::from_millis(300));
    let spec = FixedRate {
        rate: 100,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        connections: 1,
    };
    let latencies = load::fixed_rate(&target(addr, None), spec).expect("run");
    assert_eq!(latencies.count(), 200);
    // The stalled request and the ~29 behind it (due 10 ms apart) take 300, 290, 280, ... ms:
    // the slowest 5 % (10 requests) all took at least 200 ms.
    assert!(
        latencies.percentile(95.0) >= Duration::from_millis(150),
        "p95 {:?}: the queued requests' wait is counted",
        latencies.percentile(95.0)
    );
    assert!(latencies.percentile(100.0) >= Duration::from_millis(300));
    assert!(
        latencies.percentile(50.0) < Duration::from_millis(50),
        "p50 {:?}: most requests were not behind the stall",
        latencies.percentile(50.0)
    );
    assert!(
        latencies.lag(95.0) >= Duration::from_millis(150),
        "lag p95 {:?}: the late departures are reported as lag",
        latencies.lag(95.0)
    );
}

#[test]
fn a_closed_loop_counts_correct_replies_only() {
    let upstream = BytesUpstream::start(1024).expect("upstream");
    let good = load::closed_loop(
        &target(upstream.addr(), Some(1024)),
        4,
        Duration::from_millis(100),
        Duration::from_millis(500),
    )
    .expect("run");
    assert!(good.requests > 100, "{good:?}");
    assert_eq!(good.errors, 0);
    assert!(good.per_second() > 200.0, "{good:?}");

    let wrong_length = load::closed_loop(
        &target(upstream.addr(), Some(10)),
        2,
        Duration::ZERO,
        Duration::from_millis(200),
    )
    .expect("run");
    assert_eq!(
        wrong_length.requests, 0,
        "a short or long body is no success"
    );
    assert!(wrong_length.errors > 0);
}

/// `target/release/weft-proxy`, built by the same `cargo test --workspace` (the proxy crate's
/// CLI tests need it) next to this test binary's `deps/` directory.
fn proxy_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    dir.join(format!("weft-proxy{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_side_by_side_command_measures_every_target_and_writes_both_reports() {
    let proxy = proxy_binary();
    assert!(
        proxy.is_file(),
        "{} is missing: run `cargo test --workspace --release` (it builds the proxy)",
        proxy.display()
    );
    let out = tempfile::tempdir().expect("out dir");
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft-bench"));
    command
        .arg("--smoke")
        .arg("--proxy")
        .arg(&proxy)
        .arg("--out")
        .arg(out.path())
        .arg("--criterion")
        .arg(out.path().join("no-criterion-here"));
    match &nginx {
        Some(path) => {
            command.arg("--nginx").arg(path);
        }
        None => {
            eprintln!(
                "WARNING: nginx is not installed (apt-get install nginx-light; .ci/run does): \
                 the side-by-side smoke test runs without it"
            );
            command.arg("--no-nginx");
        }
    }
    let output = command.output().expect("weft-bench runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "weft-bench failed:\n{stderr}");

    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("latest.json")).expect("latest.json"),
    )
    .expect("valid JSON");
    let targets = json["targets"].as_array().expect("targets");
    let mut expected = vec![
        "direct", "weft-0", "weft-1", "weft-4", "weft-16", "weft-svc",
    ];
    if nginx.is_some() {
        expected.insert(1, "nginx");
    }
    let names: Vec<&str> = targets.iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, expected);
    for t in targets {
        let name = t["name"].as_str().unwrap_or_default();
        if let Some(memory) = t.get("memory").filter(|m| !m.is_null()) {
            assert!(memory["idle_kib"].as_u64() > Some(1024), "{name}: {memory}");
            assert!(
                memory["peak_kib"].as_u64() >= memory["idle_kib"].as_u64(),
                "{name}"
            );
        } else {
            assert_eq!(name, "direct", "every proxy reports its memory");
        }
        if name == "weft-1" {
            continue; // memory only
        }
        assert_eq!(t["errors"], 0, "{name}: every reply was a 200 of 1 KiB");
        assert!(
            t["rps"]["median"].as_f64() > Some(100.0),
            "{name}: {}",
            t["rps"]
        );
        let p50 = t["p50_us"]["median"].as_f64().unwrap_or_default();
        let p99 = t["p99_us"]["median"].as_f64().unwrap_or_default();
        assert!(p50 > 0.0 && p50 <= p99, "{name}: p50 {p50}, p99 {p99}");
        if name != "direct" {
            assert!(
                t["rps_vs_direct"].as_f64().is_some(),
                "{name}: ratio to direct"
            );
            assert_eq!(
                t["rps_vs_nginx"].as_f64().is_some(),
                nginx.is_some(),
                "{name}: ratio to nginx"
            );
        }
    }
    let md = std::fs::read_to_string(out.path().join("latest.md")).expect("latest.md");
    for section in [
        "## Latency at 1000",
        "## Throughput",
        "## Memory",
        "## Targets",
        "| weft-4 |",
    ] {
        assert!(md.contains(section), "{section} missing from:\n{md}");
    }
}
