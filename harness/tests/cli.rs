//! The `weft` binary: what a filter author sees with `filter new` and `filter test`.

use std::path::Path;
use std::process::Command;

/// `filter new`, then build what it made for wasm32-wasip2, then `filter test` on the cases it
/// wrote: the scaffold works as created, and the case runner reports a failure with a diff.
#[test]
fn filter_new_builds_and_its_cases_pass_and_a_broken_case_fails_with_a_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let krate = dir.path().join("hello-filter");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["filter", "new", "hello-filter", "--path"])
        .arg(&krate)
        .arg("--sdk-path")
        .arg(weft_root())
        .output()
        .expect("run weft");
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
    let again = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["filter", "new", "hello-filter", "--path"])
        .arg(&krate)
        .arg("--sdk-path")
        .arg(weft_root())
        .output()
        .expect("run weft");
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
    // With a built weft checkout the crate shares its target directory (.cargo/config.toml
    // says so); otherwise it builds in its own.
    let target = if krate.join(".cargo/config.toml").is_file() {
        weft_root().join("target")
    } else {
        krate.join("target")
    };
    let wasm = target.join("wasm32-wasip2/release/hello_filter.wasm");
    assert!(wasm.is_file(), "{} missing", wasm.display());

    let test = |cases: &Path| {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["filter", "test"])
            .arg(&wasm)
            .arg("--config")
            .arg(krate.join("config.yaml"))
            .arg("--cases")
            .arg(cases)
            .output()
            .expect("run weft")
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

fn weft_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("the checkout")
}

#[test]
fn filter_new_without_a_weft_checkout_says_what_to_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["filter", "new", "x-filter", "--path"])
        .arg(dir.path().join("x-filter"))
        .arg("--sdk-path")
        .arg(dir.path())
        .output()
        .expect("run weft");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a weft checkout"), "{stderr}");
    assert!(!dir.path().join("x-filter").exists(), "nothing is written");
}
