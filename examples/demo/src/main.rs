//! The quick-start demo: build the four first-party filters, start the control plane on a
//! directory of filter definitions (`examples/demo/filters/*.yaml`, the shape of the
//! `WasmFilter` resource), two local upstreams and the proxy in front of them, subscribed to
//! the control plane. Then show each policy at work — a request routed by header, one rate
//! limited, one denied for a missing token (and one let in with a token), and one with an
//! injected fault, and one checked by an external authorization service through an outbound
//! call (ext-authz) — and a hot reload: a definition edited on disk is enforced by the proxy
//! moments later, without a restart. Then mesh identity: the control plane issues workload
//! certificates, the proxy reaches a second sidecar (`reviews`, strict mTLS) over mTLS, whose
//! authz filter admits it by its SPIFFE ID, and a plaintext client is refused there. Last,
//! service discovery and resilience: a `Service` file beside the filters defines `ratings`
//! with two endpoints, one of which answers 503; the proxy, routing to the discovered service,
//! retries on the other endpoint and ejects the failing one, and the client sees only 200s.
//!
//! Run with: `cargo run --release --bin weft-demo` (add `-- --once` to exit after the requests).

#![allow(clippy::print_stdout)] // The demo talks to the user on stdout.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use clap::Parser;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use weft_controlplane::identity::Issuer;
use weft_controlplane::identity::credentials::{BootstrapTokens, Reviewer};
use weft_controlplane::source::dir::DirSource;
use weft_controlplane::{ControlPlane, DEFAULT_ROOT_NAMESPACE, server};
use weft_identity::authority::{Authority, AuthoritySource};
use weft_proxy::Proxy;
use weft_proxy::config::Config;

/// The filters the demo builds, in chain order.
const FILTERS: [&str; 5] = [
    "authz",
    "ext-authz",
    "rate-limit",
    "header-router",
    "fault-injection",
];

/// The HS256 secret the demo's authz filter trusts (and the demo signs its token with).
const SECRET: &[u8] = b"weft-demo-secret-do-not-use-elsewhere";

/// Show weft's policy filters at work on this machine.
#[derive(Debug, Parser)]
struct Args {
    /// Exit after showing the requests instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Where the proxy listens (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

type DemoClient = Client<HttpConnector, Empty<Bytes>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .context("locating the workspace")?;
    let (target, modules) = build_filters(&root)?;
    let work = target.join("weft-demo");
    let definitions = prepare_definitions(&root, &modules, &work)?;
    let control_plane = ControlPlane::new(DEFAULT_ROOT_NAMESPACE);
    let _source = DirSource::start(&definitions, control_plane.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let issuer = start_authority(&work)?;
    let cp_server = server::serve(
        &control_plane,
        TcpListener::bind("127.0.0.1:0").await?,
        None,
        Some(issuer),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    step(&format!(
        "started weft-controlplane on {} serving {} (edit the YAML there; proxies follow); it is also the mesh's certificate authority ({})",
        cp_server.local_addr(),
        definitions.display(),
        work.join("identity").display()
    ));

    let app = start_upstream("app").await?;
    let beta = start_upstream("app-beta").await?;
    step(&format!(
        "started two local upstreams: `app` on http://{app} and `app-beta` on http://{beta}"
    ));

    let ratings = [
        start_upstream("ratings-1").await?,
        start_broken_upstream().await?,
    ];
    let ratings_file = definitions.join("ratings.yaml");
    std::fs::write(&ratings_file, ratings_service(ratings))
        .with_context(|| format!("writing {}", ratings_file.display()))?;

    let orders_authz = start_authorization_service().await?;
    let cp = cp_server.local_addr();
    let reviews_app = start_upstream("reviews").await?;
    let reviews = start_reviews_sidecar(&work, &modules, cp, reviews_app).await?;
    let reviews_addr = reviews
        .listener_addr("inbound")
        .context("reviews listener address")?;
    let proxy = match start_proxy(
        &work,
        cp,
        app,
        beta,
        reviews_addr,
        orders_authz,
        args.listen,
    )
    .await
    {
        Ok(p) => p,
        Err(e) if args.listen.port() != 0 => {
            step(&format!(
                "{} is taken ({e:#}); using a free port",
                args.listen
            ));
            let any = SocketAddr::from(([127, 0, 0, 1], 0));
            start_proxy(&work, cp, app, beta, reviews_addr, orders_authz, any).await?
        }
        Err(e) => return Err(e),
    };
    let addr = proxy.listener_addr("inbound").context("listener address")?;
    let admin = proxy.admin_addr().context("admin address")?;
    wait_until(Duration::from_secs(30), || proxy.snapshot_version() > 0)
        .await
        .context("the proxy did not receive its filters from the control plane")?;
    let chain: Vec<String> = control_plane
        .proxies()
        .first()
        .map(|p| p.filters.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default();
    step(&format!(
        "started weft-proxy on http://{addr} (metrics on http://{admin}/metrics); the control plane sent it the chain {}",
        chain.join(" → ")
    ));
    println!();

    let client = Client::builder(TokioExecutor::new()).build_http();
    show(
        &client,
        addr,
        "/hello",
        &[("x-version", "beta")],
        "routed by header: header-router sent it to `app-beta` (other requests go to `app`)",
    )
    .await?;
    for _ in 0..2 {
        fetch(&client, addr, "/limited", &[]).await?;
    }
    show(
        &client,
        addr,
        "/limited",
        &[],
        "rate limited: route `limited` allows a burst of 2 per client, then 1 per `1m30s` (one duration syntax in every filter and file); this was the 3rd",
    )
    .await?;
    show(
        &client,
        addr,
        "/admin",
        &[],
        "denied: route `admin` needs a JWT and this request has none",
    )
    .await?;
    show(
        &client,
        addr,
        "/docs/..//%61dmin",
        &[],
        "denied too: the proxy normalizes the path before routing, so `/docs/..//%61dmin` is `/admin` to routes, filters and the upstream",
    )
    .await?;
    let bearer = format!("Bearer {}", token("alice")?);
    show(
        &client,
        addr,
        "/admin",
        &[("authorization", &bearer)],
        "let in: the token is valid; authz forwarded its `sub` claim as `x-user`",
    )
    .await?;
    show(
        &client,
        addr,
        "/orders/42",
        &[],
        "denied by an external service: ext-authz asked `orders-authz` (an outbound call through the proxy's own upstream pool; the request waited without holding a thread) and relayed its 403 and body",
    )
    .await?;
    show(
        &client,
        addr,
        "/orders/42",
        &[("authorization", "Bearer let-me-in")],
        "allowed by it: the service answered 200 with `x-user`, which ext-authz put on the request to `app`",
    )
    .await?;
    show(
        &client,
        addr,
        "/hello",
        &[("x-weft-fault-abort", "503")],
        "injected fault: fault-injection aborted it with 503 as the chaos header asked",
    )
    .await?;

    // Hot reload: raise the limit on disk; the next request is admitted.
    let file = definitions.join("rate-limit.yaml");
    let edited = std::fs::read_to_string(&file)?.replace("capacity: 2,", "capacity: 5,");
    let before = proxy.snapshot_version();
    let started = std::time::Instant::now();
    std::fs::write(&file, edited)?;
    wait_until(Duration::from_secs(10), || {
        proxy.snapshot_version() > before
    })
    .await
    .context("the edit did not reach the proxy")?;
    step(&format!(
        "edited {}: capacity 2 → 5; the proxy enforced the new version {:.0?} later, without a restart",
        file.display(),
        started.elapsed()
    ));
    show(
        &client,
        addr,
        "/limited",
        &[],
        "admitted: the new limit has fresh buckets of 5",
    )
    .await?;

    // Mesh identity: both sidecars got workload certificates from the control plane.
    let certified = |metrics: &weft_proxy::metrics::Metrics| {
        metrics
            .encode()
            .contains("weft_identity_renewals_total{result=\"ok\"} 1")
    };
    wait_until(Duration::from_secs(30), || {
        certified(proxy.metrics()) && certified(reviews.metrics())
    })
    .await
    .context("the proxy got no workload certificate")?;
    step(&format!(
        "mesh identity: the control plane issued workload certificates to the proxy (spiffe://cluster.local/ns/default/sa/demo) and to a second sidecar, `reviews` (spiffe://cluster.local/ns/shop/sa/reviews), strict mTLS on {reviews_addr}"
    ));
    show(
        &client,
        addr,
        "/reviews",
        &[("x-weft-peer-identity", "spiffe://cluster.local/ns/shop/sa/admin")],
        "over mTLS: the proxy called the `reviews` sidecar with its certificate; the authz filter there admits only the demo's SPIFFE ID, and passed it on in `x-weft-peer-identity` (the copy the client sent was dropped)",
    )
    .await?;
    let plaintext = fetch(&client, reviews_addr, "/", &[]).await;
    println!("$ curl -i http://{reviews_addr}/");
    match plaintext {
        Err(e) => println!("curl: (56) {e}"),
        Ok(response) => println!("HTTP/1.1 {}", response.status()),
    }
    println!(
        "# refused: the `reviews` sidecar speaks only mTLS (tls.mode: strict) and closed this plaintext connection\n"
    );

    // Discovery and resilience: `ratings` comes from ratings.yaml, one endpoint is broken.
    wait_until(Duration::from_secs(10), || {
        control_plane
            .proxies()
            .iter()
            .filter_map(|p| p.discovery.as_ref())
            .any(|d| d.acked > 0 && d.services > 0)
    })
    .await
    .context("the proxy did not receive the discovered services")?;
    step(&format!(
        "service discovery: the control plane read `ratings` from {} (two endpoints: `ratings-1` on {}, and {} which answers 503 to everything) and streamed it to the proxy; route `ratings` sends to it by name",
        ratings_file.display(),
        ratings[0],
        ratings[1]
    ));
    let mut answers = Vec::new();
    for _ in 0..6 {
        let response = fetch(&client, addr, "/ratings", &[]).await?;
        answers.push(response.status().as_u16().to_string());
    }
    println!(
        "$ for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{{http_code}} ' http://{addr}/ratings; done"
    );
    println!("{}", answers.join(" "));
    let metrics = proxy.metrics().encode();
    for line in metrics.lines().filter(|l| {
        (l.starts_with("weft_upstream_retries_total")
            || l.starts_with("weft_upstream_ejections_total"))
            && l.contains("upstream=\"ratings.default:80\"")
            && !l.ends_with(" 0")
    }) {
        println!("{line}");
    }
    println!(
        "# resilience: each request that met the broken endpoint was retried on the other one (retries: {{attempts: 2}}), and after 2 failures in a row the broken endpoint was ejected for 30s (outlier_detection), so the client saw only 200s\n"
    );

    if args.once {
        proxy.shutdown().await;
        reviews.shutdown().await;
        cp_server.shutdown().await;
        return Ok(());
    }
    println!("The proxy keeps running. Try:");
    println!("  curl -i -H 'x-version: beta' http://{addr}/hello");
    println!("  curl -i -H 'x-weft-fault-delay: 1000' http://{addr}/hello");
    println!("  curl -i -H 'authorization: {bearer}' http://{addr}/admin");
    println!("  curl -i -H 'authorization: Bearer let-me-in' http://{addr}/orders/1   # ext-authz");
    println!("  curl -s http://{admin}/metrics | grep weft_filter_");
    println!("  curl -i http://{addr}/reviews   # over mTLS to the `reviews` sidecar");
    println!(
        "  curl -i http://{addr}/ratings   # a discovered service, retried past its broken endpoint"
    );
    println!(
        "  $EDITOR {}/*.yaml   # the proxy follows",
        definitions.display()
    );
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    proxy.shutdown().await;
    reviews.shutdown().await;
    cp_server.shutdown().await;
    Ok(())
}

fn step(message: &str) {
    println!("==> {message}");
}

/// Poll `done` every 5 ms until it holds, or fail after `limit`.
async fn wait_until(limit: Duration, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// A fresh copy of the demo's definitions with the modules beside them, in `work/filters`.
fn prepare_definitions(root: &Path, modules: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    let dir = work.join("filters");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A fresh state directory too: the demo shows the control plane delivering the chain.
    let _ = std::fs::remove_dir_all(work.join("state"));
    for filter in FILTERS {
        let yaml = format!("{filter}.yaml");
        std::fs::copy(
            root.join("examples/demo/filters").join(&yaml),
            dir.join(&yaml),
        )
        .with_context(|| format!("copying {yaml}"))?;
        std::fs::copy(modules.join(wasm_name(filter)), dir.join(wasm_name(filter)))
            .with_context(|| format!("copying {}", wasm_name(filter)))?;
    }
    Ok(dir)
}

/// Build the first-party filters for wasm32-wasip2, installing the target if it is missing.
/// Returns the target directory and the directory holding the `.wasm` files.
fn build_filters(root: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
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
    step("building the first-party filters (filters/*) for wasm32-wasip2");
    let mut command = Command::new(cargo);
    command.current_dir(root).args([
        "build",
        "--quiet",
        "--profile",
        "guest",
        "--target",
        "wasm32-wasip2",
    ]);
    for filter in FILTERS {
        command.args(["-p", filter]);
    }
    let status = command.status().context("running cargo")?;
    if !status.success() {
        bail!("building the filters failed");
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target_dir.join("wasm32-wasip2/guest");
    let mut sizes = Vec::new();
    for filter in FILTERS {
        let module = dir.join(wasm_name(filter));
        let size = std::fs::metadata(&module)
            .with_context(|| format!("{} was not built", module.display()))?
            .len();
        sizes.push(format!("{filter} {} KiB", size / 1024));
    }
    step(&format!("built {} ({})", dir.display(), sizes.join(", ")));
    Ok((target_dir, dir))
}

fn wasm_name(filter: &str) -> String {
    format!("{}.wasm", filter.replace('-', "_"))
}

/// A tiny upstream that says who it is and echoes the `x-user` header it received.
async fn start_upstream(name: &'static str) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let mut text =
                            format!("hello from `{name}`; you asked for {}\n", req.uri());
                        for header in ["x-user", "x-weft-peer-identity"] {
                            if let Some(value) =
                                req.headers().get(header).and_then(|v| v.to_str().ok())
                            {
                                text.push_str(&format!("{header}: {value}\n"));
                            }
                        }
                        Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(text))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The `orders` route's authorization service, asked by the ext-authz filter: `Bearer
/// let-me-in` is allowed as user `demo-user`; anything else gets 403 and a reason.
async fn start_authorization_service() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let allowed = req
                        .headers()
                        .get("authorization")
                        .is_some_and(|v| v == "Bearer let-me-in");
                    let response = if allowed {
                        http::Response::builder()
                            .header("x-user", "demo-user")
                            .body(Full::new(Bytes::new()))
                    } else {
                        http::Response::builder()
                            .status(403)
                            .body(Full::new(Bytes::from_static(
                                b"orders-authz: a bearer token is required for /orders\n",
                            )))
                    };
                    Ok::<_, Infallible>(response.unwrap_or_default())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// An upstream that answers every request with 503, as a failing instance would.
async fn start_broken_upstream() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                    let mut response = http::Response::new(Full::new(Bytes::from_static(
                        b"ratings-2 is broken\n",
                    )));
                    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The `Service` definition of `ratings` (namespace `default`): two endpoints, retries and
/// outlier detection.
fn ratings_service([good, broken]: [SocketAddr; 2]) -> String {
    format!(
        r#"apiVersion: weft.dev/v1alpha1
kind: Service
metadata: {{ name: ratings, namespace: default }}
spec:
  ports: [{{ name: http, port: 80, protocol: http1 }}]
  endpoints:
    - {{ address: "{good}", labels: {{ version: v1 }} }}
    - {{ address: "{broken}", labels: {{ version: v2 }} }}
  trafficPolicy:
    retries: {{ attempts: 2, on: [connect-failure, reset, 503] }}
    outlier_detection: {{ consecutive_failures: 2, base_ejection_time: 30s, max_ejection_percent: 50 }}
"#
    )
}

/// The mesh's certificate authority, kept in `<work>/identity` (generated on the first run),
/// with one bootstrap token per sidecar of the demo.
fn start_authority(work: &Path) -> anyhow::Result<Arc<Issuer>> {
    let (authority, _) = Authority::load(
        &AuthoritySource::Directory(work.join("identity")),
        "cluster.local",
        Duration::from_secs(3600),
    )?;
    let tokens = work.join("bootstrap-tokens");
    std::fs::write(
        &tokens,
        "# <token> <namespace>/<service-account>: the directory source's single-machine mode\n\
         demo-token-for-the-demo-proxy default/demo\n\
         demo-token-for-the-reviews-sidecar shop/reviews\n",
    )?;
    for (file, token) in [
        ("demo.token", "demo-token-for-the-demo-proxy"),
        ("reviews.token", "demo-token-for-the-reviews-sidecar"),
    ] {
        std::fs::write(work.join(file), token)?;
    }
    let reviewer = Reviewer::Bootstrap(BootstrapTokens::load(tokens).map_err(anyhow::Error::msg)?);
    Ok(Arc::new(Issuer::new(authority, reviewer)))
}

/// A second sidecar, `reviews` in namespace `shop`: strict mTLS in front of its app, and the
/// authz filter as a mesh-only policy that admits the demo proxy's identity alone.
async fn start_reviews_sidecar(
    work: &Path,
    modules: &Path,
    control_plane: SocketAddr,
    app: SocketAddr,
) -> anyhow::Result<weft_proxy::RunningProxy> {
    let authz = modules.join(wasm_name("authz"));
    let yaml = format!(
        r#"listeners:
  - name: inbound
    address: 127.0.0.1:0
    tls: {{ mode: strict }}
    peer_identity_header: x-weft-peer-identity
    filters:
      - name: authz
        module: {authz:?}
        config: {{ rules: {{ allow: [ {{ from: {{ principals: ["cluster.local/ns/default/sa/demo"] }} }} ] }} }}
    routes:
      - name: default
        upstream: app
upstreams:
  - name: app
    endpoints: ["{app}"]
control_plane:
  address: http://{control_plane}
  name: reviews-0
  namespace: shop
  labels: {{ app: reviews }}
  state_dir: reviews-state
identity:
  service_account: reviews
  token_file: reviews.token
"#
    );
    let path = work.join("reviews.yaml");
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    let config = Config::load(&path)?;
    Ok(Proxy::start(config).await?)
}

async fn start_proxy(
    work: &Path,
    control_plane: SocketAddr,
    app: SocketAddr,
    beta: SocketAddr,
    reviews: SocketAddr,
    orders_authz: SocketAddr,
    listen: SocketAddr,
) -> anyhow::Result<weft_proxy::RunningProxy> {
    // The proxy's own file names the listener, routes and upstreams; the filters come from
    // the control plane, which selects this proxy by its labels.
    let yaml = format!(
        r#"admin:
  address: 127.0.0.1:0
listeners:
  - name: inbound
    address: {listen}
    routes:
      - name: admin
        match: {{ path: {{ prefix: /admin }} }}
        upstream: app
      - name: limited
        match: {{ path: {{ prefix: /limited }} }}
        upstream: app
      - name: orders
        match: {{ path: {{ prefix: /orders }} }}
        upstream: app
      - name: reviews
        match: {{ path: {{ prefix: /reviews }} }}
        upstream: reviews
      - name: ratings
        match: {{ path: {{ prefix: /ratings }} }}
        upstream: ratings          # the discovered service ratings.default (ratings.yaml)
      - name: default
        match: {{ path: {{ prefix: / }} }}
        upstream: app
upstreams:
  - name: app
    endpoints: ["{app}"]
  - name: app-beta
    endpoints: ["{beta}"]
  - name: reviews
    endpoints: ["{reviews}"]
    tls: {{ mode: mesh, identity: spiffe://cluster.local/ns/shop/sa/reviews }}
  - name: orders-authz             # ext-authz's calls go here
    endpoints: ["{orders_authz}"]
control_plane:
  address: http://{control_plane}
  name: demo-0
  namespace: default
  labels: {{ app: demo }}
  state_dir: state
identity:
  service_account: demo
  token_file: demo.token
discovery:
  namespaces: [default]
"#
    );
    let path = work.join("weft.yaml");
    std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
    let config = Config::load(&path)?;
    Ok(Proxy::start(config).await?)
}

/// An HS256 JWT for `sub`, issued by `weft-demo`, valid for an hour.
fn token(sub: &str) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let header = B64.encode(br#"{"alg":"HS256","typ":"JWT","kid":"demo"}"#);
    let claims = B64.encode(format!(
        r#"{{"iss":"weft-demo","sub":"{sub}","iat":{now},"exp":{}}}"#,
        now + 3600
    ));
    let signing_input = format!("{header}.{claims}");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET)?;
    mac.update(signing_input.as_bytes());
    let signature = B64.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}

/// Send one GET through the proxy; the response is read and dropped.
async fn fetch(
    client: &DemoClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<http::Response<Bytes>> {
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.request(request.body(Empty::new())?).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(http::Response::from_parts(parts, body))
}

/// Send one GET through the proxy and print it like `curl -i` would.
async fn show(
    client: &DemoClient,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    what: &str,
) -> anyhow::Result<()> {
    let mut curl = String::from("curl -i");
    if path.contains("/.") || path.contains('%') || path.contains("//") {
        // curl would normalize the path itself.
        curl.push_str(" --path-as-is");
    }
    for (name, value) in headers {
        let shown = if value.len() > 40 {
            format!("{}…", &value[..40])
        } else {
            (*value).to_owned()
        };
        curl.push_str(&format!(" -H '{name}: {shown}'"));
    }
    println!("$ {curl} http://{addr}{path}");
    let response = fetch(client, addr, path, headers).await?;
    println!("HTTP/1.1 {}", response.status());
    for (name, value) in response.headers() {
        if name != "date" {
            println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
        }
    }
    println!("\n{}", String::from_utf8_lossy(response.body()).trim_end());
    println!("# {what}\n");
    Ok(())
}
