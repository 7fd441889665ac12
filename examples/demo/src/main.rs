//! The quick-start demo: build the example filter, start a local upstream and the proxy in front
//! of it, and show one request the filter modifies and one it rejects.
//!
//! Run with: `cargo run --release --bin weft-demo` (add `-- --once` to exit after the two requests).

#![allow(clippy::print_stdout)] // The demo talks to the user on stdout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use weft_proxy::Proxy;
use weft_proxy::config::Config;

/// Show weft in action on this machine.
#[derive(Debug, Parser)]
struct Args {
    /// Exit after showing the two requests instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Where the proxy listens (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .context("locating the workspace")?;
    let module = build_filter(&root)?;

    let upstream = start_upstream().await?;
    step(&format!("started a local upstream on http://{upstream}"));

    let proxy = match start_proxy(&module, upstream, args.listen).await {
        Ok(p) => p,
        Err(e) if args.listen.port() != 0 => {
            step(&format!(
                "{} is taken ({e:#}); using a free port",
                args.listen
            ));
            start_proxy(&module, upstream, SocketAddr::from(([127, 0, 0, 1], 0))).await?
        }
        Err(e) => return Err(e),
    };
    let addr = proxy.listener_addr("inbound").context("listener address")?;
    let admin = proxy.admin_addr().context("admin address")?;
    step(&format!(
        "started weft-proxy on http://{addr} (metrics on http://{admin}/metrics) with filter `header-filter`"
    ));

    println!();
    show(
        addr,
        &[("x-user", "alice")],
        "modified: the filter added `x-filtered-by: weft`",
    )
    .await?;
    show(
        addr,
        &[],
        "rejected: the filter replied 400 itself; the upstream never saw it",
    )
    .await?;

    if args.once {
        proxy.shutdown().await;
        return Ok(());
    }
    println!("The proxy keeps running. Try:");
    println!("  curl -i -H 'x-user: you' http://{addr}/hello");
    println!("  curl -i http://{addr}/hello");
    println!("  curl -s http://{admin}/metrics | grep weft_requests_total");
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    proxy.shutdown().await;
    Ok(())
}

fn step(message: &str) {
    println!("==> {message}");
}

/// Build `examples/header-filter` for wasm32-wasip2, installing the target if it is missing.
fn build_filter(root: &Path) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output();
    let has_target = sysroot.is_ok_and(|o| {
        Path::new(String::from_utf8_lossy(&o.stdout).trim())
            .join("lib/rustlib/wasm32-wasip2")
            .exists()
    });
    if !has_target {
        step("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
        let ok = Command::new("rustup")
            .args(["target", "add", "wasm32-wasip2"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!("the wasm32-wasip2 target is missing: run `rustup target add wasm32-wasip2`");
        }
    }
    step("building examples/header-filter for wasm32-wasip2");
    let status = Command::new(cargo)
        .current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
            "-p",
            "header-filter",
        ])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the example filter failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let module = target_dir.join("wasm32-wasip2/guest/header_filter.wasm");
    let size = std::fs::metadata(&module)
        .with_context(|| format!("{} was not built", module.display()))?
        .len();
    step(&format!("built {} ({} KiB)", module.display(), size / 1024));
    Ok(module)
}

/// A tiny upstream that says hello and lists the headers it received.
async fn start_upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let mut text =
                        format!("hello from the upstream; you asked for {}\n", req.uri());
                    if let Some(user) = req.headers().get("x-user").and_then(|v| v.to_str().ok()) {
                        text.push_str(&format!("x-user: {user}\n"));
                    }
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn start_proxy(
    module: &Path,
    upstream: SocketAddr,
    listen: SocketAddr,
) -> anyhow::Result<weft_proxy::RunningProxy> {
    let yaml = format!(
        r#"
admin:
  address: 127.0.0.1:0
listeners:
  - name: inbound
    address: {listen}
    filters:
      - name: header-filter
        module: {module}
        config:
          required_header: x-user
          response_header: {{ name: x-filtered-by, value: weft }}
    routes:
      - name: default
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{upstream}"]
"#,
        module = module.display()
    );
    let config = Config::from_yaml(&yaml, Path::new("<demo>"))?;
    Ok(Proxy::start(config).await?)
}

/// Send one GET through the proxy and print it like `curl -i` would.
async fn show(addr: SocketAddr, headers: &[(&str, &str)], what: &str) -> anyhow::Result<()> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = http::Request::get(format!("http://{addr}/hello"));
    let mut curl = String::from("curl -i");
    for (name, value) in headers {
        request = request.header(*name, *value);
        curl.push_str(&format!(" -H '{name}: {value}'"));
    }
    println!("$ {curl} http://{addr}/hello");
    let response = client.request(request.body(Empty::new())?).await?;
    println!("HTTP/1.1 {}", response.status());
    for (name, value) in response.headers() {
        if name != "date" {
            println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
        }
    }
    let body = response.into_body().collect().await?.to_bytes();
    println!("\n{}", String::from_utf8_lossy(&body).trim_end());
    println!("# {what}\n");
    Ok(())
}
