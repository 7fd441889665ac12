//! The `weft-proxy` binary's `check` command: what an operator sees before rolling out a config.

use std::path::Path;
use std::process::{Command, Output};

fn check(dir: &Path, yaml: &str) -> Output {
    let path = dir.join("weft.yaml");
    std::fs::write(&path, yaml).expect("write config");
    Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run weft-proxy")
}

const VALID: &str = "\
listeners:
  - name: inbound
    address: 127.0.0.1:0
    routes:
      - name: default
        match: { path: { prefix: / } }
        upstream: app
upstreams:
  - name: app
    endpoints: [\"127.0.0.1:9\"]
";

#[test]
fn check_accepts_a_valid_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = check(dir.path(), VALID);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ok (1 listeners, 0 filters configured)"),
        "{stdout}"
    );
}

#[test]
fn check_rejects_a_bad_config_naming_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = check(
        dir.path(),
        &VALID.replace("upstream: app", "upstream: bakend"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("weft.yaml:7:"), "file and line: {stderr}");
    assert!(
        stderr.contains("listeners[0].routes[0].upstream"),
        "field: {stderr}"
    );
    assert!(stderr.contains("bakend"), "the bad value: {stderr}");
}

#[test]
fn check_rejects_a_garbage_module_naming_the_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("junk.wasm"), b"\0asm not really").expect("write module");
    let yaml = VALID.replace(
        "    routes:",
        "    filters:\n      - { name: junk-filter, module: junk.wasm }\n    routes:",
    );
    let out = check(dir.path(), &yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("filter \"junk-filter\""),
        "names the filter: {stderr}"
    );
    assert!(
        stderr.contains("not a valid WebAssembly component"),
        "says why: {stderr}"
    );
}
