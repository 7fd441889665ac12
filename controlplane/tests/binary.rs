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
    let mut child = Command::new(BIN)
        .arg("--source")
        .arg(format!("dir={}", dir.display()))
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
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
    while grpc.is_none() || admin.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the binary logs its addresses");
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
    }
    (running, grpc.unwrap(), admin.unwrap())
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
