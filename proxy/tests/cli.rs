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

/// `filter new`, then build what it made for wasm32-wasip2, then `filter test` on the cases it
/// wrote: the scaffold works as created, and the case runner reports a failure with a diff.
#[test]
fn filter_new_builds_and_its_cases_pass_and_a_broken_case_fails_with_a_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let krate = dir.path().join("hello-filter");
    let out = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["filter", "new", "hello-filter", "--path"])
        .arg(&krate)
        .output()
        .expect("run weft-proxy");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "tests/harness.rs",
        "cases.yaml",
        "README.md",
    ] {
        assert!(
            krate.join(file).is_file(),
            "{file} missing; said:\n{stdout}"
        );
    }

    // A second `new` into the same place refuses rather than overwriting.
    let again = Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
        .args(["filter", "new", "hello-filter", "--path"])
        .arg(&krate)
        .output()
        .expect("run weft-proxy");
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = Command::new(cargo)
        .current_dir(&krate)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        build.status.success(),
        "the new crate does not build:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let wasm = target.join("wasm32-wasip2/release/hello_filter.wasm");
    assert!(wasm.is_file(), "{} missing", wasm.display());

    let test = |cases: &Path| {
        Command::new(env!("CARGO_BIN_EXE_weft-proxy"))
            .args(["filter", "test"])
            .arg(&wasm)
            .arg("--config")
            .arg(krate.join("config.yaml"))
            .arg("--cases")
            .arg(cases)
            .output()
            .expect("run weft-proxy")
    };
    let pass = test(&krate.join("cases.yaml"));
    let report = String::from_utf8_lossy(&pass.stdout);
    assert!(
        pass.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&pass.stderr)
    );
    assert!(report.contains("2 passed, 0 failed"), "{report}");

    let cases = std::fs::read_to_string(krate.join("cases.yaml")).expect("read cases");
    let broken = krate.join("broken.yaml");
    std::fs::write(&broken, cases.replace("status: 403", "status: 401")).expect("write");
    let fail = test(&broken);
    let report = String::from_utf8_lossy(&fail.stdout);
    assert_eq!(fail.status.code(), Some(1), "{report}");
    assert!(
        report.contains("FAIL  x-block is refused\n      status:\n      - 401\n      + 403"),
        "{report}"
    );
    assert!(report.contains("1 passed, 1 failed"), "{report}");

    std::fs::write(&broken, cases.replace("action: respond", "action: reply")).expect("write");
    let bad = test(&broken);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("broken.yaml:"), "{stderr}");
    assert!(stderr.contains("cases[1].expect.action"), "{stderr}");
}
