//! The `weft-controlplane` binary as an operator runs it: a real process on a definitions
//! directory, its admin endpoint, its argument errors and its shutdown on SIGTERM.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_weft-controlplane");

/// Kills the child if the test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary on `dir`; returns it with its gRPC and admin addresses, read from its log.
fn start(dir: &std::path::Path) -> (Running, SocketAddr, SocketAddr) {
    let (running, grpc, admin, _) = start_with(dir, &[]);
    (running, grpc, admin)
}

/// [`start`] with `extra` arguments; also returns the log lines up to the addresses.
fn start_with(
    dir: &std::path::Path,
    extra: &[&str],
) -> (Running, SocketAddr, SocketAddr, Vec<String>) {
    let mut child = Command::new(BIN)
        .arg("--source")
        .arg(format!("dir={}", dir.display()))
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let running = Running(child);
    let (mut grpc, mut admin) = (None, None);
    let mut lines = Vec::new();
    while grpc.is_none() || admin.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the binary logs its addresses; it logged {lines:#?}"));
        let address = || -> SocketAddr {
            let at = line.find("address=").expect("an address field") + "address=".len();
            line[at..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        if line.contains("control plane listening") {
            grpc = Some(address());
        } else if line.contains("admin listening") {
            admin = Some(address());
        }
        lines.push(line);
    }
    (running, grpc.unwrap(), admin.unwrap(), lines)
}

/// `GET path` on the admin endpoint over a plain TCP HTTP/1.1 exchange: (status, body).
fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn serves_a_directory_and_reports_filters_and_errors_on_its_admin_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.wasm"), b"\0asm module").unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        "metadata:\n  name: good\nspec:\n  module:\n    file: m.wasm\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "metadata:\n  name: bad\nspec:\n  module:\n    file: m.wasm\n  phase: Later\n",
    )
    .unwrap();
    let (mut running, _grpc, admin) = start(dir.path());

    let (status, body) = get(admin, "/healthz");
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, filters) = get(admin, "/filters");
    assert_eq!(status, 200, "{filters}");
    let filters: serde_json::Value = serde_json::from_str(&filters).unwrap();
    let names: Vec<&str> = filters["filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["good"], "{filters:#}");
    let message = filters["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("bad.yaml:6:") && message.contains("spec.phase"),
        "the bad file's error names its line and field: {message}"
    );
    let (status, proxies) = get(admin, "/proxies");
    assert_eq!(status, 200, "{proxies}");
    let proxies: serde_json::Value = serde_json::from_str(&proxies).unwrap();
    assert_eq!(
        proxies["proxies"].as_array().map(Vec::len),
        Some(0),
        "{proxies:#}"
    );
    assert_eq!(get(admin, "/nope").0, 404);

    // SIGTERM: a clean exit.
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = running.0.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn argument_errors_say_what_is_wrong() {
    let output = Command::new(BIN)
        .args(["--source", "consul"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("expected `dir=PATH`") && stderr.contains("or `kubernetes`"),
        "{stderr}"
    );

    // No cluster to talk to: a clear error, not a hang or a panic.
    let output = Command::new(BIN)
        .args(["--source", "kubernetes", "--listen", "127.0.0.1:0"])
        .env("KUBECONFIG", "/does/not/exist/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach Kubernetes"), "{stderr}");

    let output = Command::new(BIN)
        .args(["--source", "dir=/does/not/exist", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/does/not/exist"), "{stderr}");
}

const TOKEN: &str = "binary-test-token-0123456789";

/// `Certify` as `shop/orders` with `token` against the binary at `grpc`.
fn certify(grpc: SocketAddr, token: &str) -> Result<weft_api::v1::CertifyResponse, tonic::Status> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let key = weft_identity::tls::WorkloadKey::generate().unwrap();
        let request = weft_api::v1::CertifyRequest {
            csr_der: key.csr_der().unwrap(),
            token: token.to_owned(),
            namespace: "shop".to_owned(),
            service_account: "orders".to_owned(),
        };
        let mut client = weft_api::v1::identity_client::IdentityClient::new(channel);
        let answer = tokio::time::timeout(Duration::from_secs(10), client.certify(request))
            .await
            .expect("Certify answers in time")?
            .into_inner();
        weft_identity::tls::Credentials::new(
            &key,
            &answer.certificate_chain_pem,
            &answer.trust_anchors_pem,
        )
        .expect("usable credentials");
        Ok(answer)
    })
}

fn stop(mut running: Running) {
    let pid = running.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = running.0.wait().unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn issues_identities_from_a_persisted_authority_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let definitions = dir.path().join("filters");
    std::fs::create_dir(&definitions).unwrap();
    let ca = dir.path().join("ca");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("# proxies\n{TOKEN} shop/orders\n")).unwrap();
    let args = [
        "--identity-dir",
        ca.to_str().unwrap(),
        "--bootstrap-tokens",
        tokens.to_str().unwrap(),
        "--certificate-lifetime",
        "2h",
        "--trust-domain",
        "example.org",
    ];

    let (running, grpc, admin, lines) = start_with(&definitions, &args);
    let warning = lines
        .iter()
        .find(|l| l.contains("NEW mesh trust anchor"))
        .unwrap_or_else(|| panic!("a loud warning about the new anchor: {lines:#?}"));
    assert!(
        warning.contains("WARN") && warning.contains(ca.to_str().unwrap()),
        "{warning}"
    );
    assert!(ca.join("ca.pem").exists() && ca.join("ca-key.pem").exists());
    let (status, body) = get(admin, "/identity");
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["enabled"], true, "{view:#}");
    assert_eq!(view["trustDomain"], "example.org", "{view:#}");
    assert_eq!(view["credentials"], "bootstrap-tokens", "{view:#}");
    assert_eq!(view["issued"], 0, "{view:#}");

    let first = certify(grpc, TOKEN).unwrap();
    assert_eq!(first.spiffe_id, "spiffe://example.org/ns/shop/sa/orders");
    let lifetime = first.not_after_unix
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
    assert!((7190..=7201).contains(&lifetime), "{lifetime}");
    let refused = certify(grpc, "wrong-token-0123456789abcdef").unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let (_, body) = get(admin, "/identity");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["issued"], 1, "{view:#}");
    assert_eq!(view["refused"]["unauthenticated"], 1, "{view:#}");
    stop(running);

    // Restarted on the same directory: the same anchor, and no warning.
    let (running, grpc, _admin, lines) = start_with(&definitions, &args);
    assert!(
        !lines.iter().any(|l| l.contains("NEW mesh trust anchor")),
        "{lines:#?}"
    );
    let second = certify(grpc, TOKEN).unwrap();
    assert_eq!(second.trust_anchors_pem, first.trust_anchors_pem);
    stop(running);

    // Without an authority: Certify says how to turn identity on; /identity says it is off.
    let (running, grpc, admin, _) = start_with(&definitions, &[]);
    let off = certify(grpc, TOKEN).unwrap_err();
    assert_eq!(off.code(), tonic::Code::FailedPrecondition, "{off:?}");
    assert!(off.message().contains("--identity-dir"), "{off:?}");
    let (_, body) = get(admin, "/identity");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["enabled"], false, "{view:#}");
    stop(running);
}

#[test]
fn identity_flag_errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let source = format!("dir={}", dir.path().display());
    let ca = dir.path().join("ca");
    let ca = ca.to_str().unwrap();
    let tokens = dir.path().join("tokens");
    let run = |args: &[&str]| {
        let output = Command::new(BIN)
            .args([
                "--source",
                source.as_str(),
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    // An authority on the directory source needs bootstrap tokens.
    let (code, stderr) = run(&["--identity-dir", ca]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs --bootstrap-tokens FILE"), "{stderr}");
    assert!(
        !std::path::Path::new(ca).exists(),
        "nothing generated on a bad start"
    );
    // Tokens without an authority.
    let (code, stderr) = run(&["--bootstrap-tokens", tokens.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("need a certificate authority"), "{stderr}");
    // The audience is for service-account tokens.
    std::fs::write(&tokens, format!("{TOKEN} shop/orders\n")).unwrap();
    let (code, stderr) = run(&[
        "--identity-dir",
        ca,
        "--bootstrap-tokens",
        tokens.to_str().unwrap(),
        "--token-audience",
        "weft",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--token-audience is for --source kubernetes"),
        "{stderr}"
    );
    // A malformed token file names its line.
    std::fs::write(&tokens, format!("# ok\n{TOKEN} shop\n")).unwrap();
    let (code, stderr) = run(&[
        "--identity-dir",
        ca,
        "--bootstrap-tokens",
        tokens.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:", tokens.display())),
        "{stderr}"
    );
    assert!(
        !stderr.contains(TOKEN),
        "the token is never printed: {stderr}"
    );
    // Mounted files come as a set of three, and not with a directory.
    let (code, stderr) = run(&["--identity-trust-anchors", "/a.pem"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--identity-issuer-cert"), "{stderr}");
    let (code, stderr) = run(&[
        "--identity-dir",
        ca,
        "--identity-trust-anchors",
        "/a.pem",
        "--identity-issuer-cert",
        "/b.pem",
        "--identity-issuer-key",
        "/c.pem",
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    // A lifetime the authority cannot give.
    std::fs::write(&tokens, format!("{TOKEN} shop/orders\n")).unwrap();
    let (code, stderr) = run(&[
        "--identity-dir",
        ca,
        "--bootstrap-tokens",
        tokens.to_str().unwrap(),
        "--certificate-lifetime",
        "400d",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("certificate lifetime"), "{stderr}");
}
