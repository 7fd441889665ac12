//! Builds the guest filters the tests load: every crate in `programs/`, the first-party filters
//! in `filters/` and the `examples/header-filter` example, as `wasm32-wasip2` components with the workspace's `guest`
//! profile.
//!
//! One nested `cargo build` compiles them all into `<target>/guests`, a target directory of its
//! own: the outer build holds the lock on `<target>`, and the guests need none of its flags. Each
//! component's absolute path is passed to the tests as `WEFT_GUEST_<NAME>` (the crate name in
//! upper snake case, e.g. `WEFT_GUEST_HEADER_FILTER`).

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "guest";

/// Environment variables the outer build sets (or a tool set for it) that must not reach the
/// nested one: they describe the outer build's target, profile and flags, and would make the
/// guests build for the wrong target, with the wrong flags, or through clippy.
const CLEARED_VARS: &[&str] = &[
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTDOCFLAGS",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
    "RUSTC_LINKER",
];

/// Prefixes of such variables: per-profile and per-target overrides, the build script's own cfg,
/// feature and package variables, and cargo-llvm-cov's settings.
const CLEARED_PREFIXES: &[&str] = &[
    "CARGO_PROFILE_",
    "CARGO_TARGET_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_LLVM_COV",
];

/// Build every guest and tell cargo where each component is.
#[allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from stdout"
)]
pub(crate) fn build() {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("the tests crate lives in the workspace root")
        .to_path_buf();

    let guests = guest_crates(&manifest_dir);
    for guest in &guests {
        for watched in &guest.watch {
            println!("cargo:rerun-if-changed={watched}");
        }
    }
    // The contract, the SDK, the `guest` profile (root manifest) and the locked dependency
    // versions shape every guest.
    for watched in [
        "../wit",
        "../sdk/src",
        "../sdk/Cargo.toml",
        "../Cargo.toml",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={watched}");
    }

    ensure_target_installed();

    let target_dir = outer_target_dir(&workspace).join("guests");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["--profile", PROFILE, "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    // `name@version` stays unambiguous should a dependency ever share a guest's name.
    let version = env_var("CARGO_PKG_VERSION");
    for guest in &guests {
        command.arg("-p").arg(format!("{}@{version}", guest.name));
    }
    // CARGO_MAKEFLAGS (the jobserver) is kept, so the nested build shares the outer `-j`.
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && (CLEARED_VARS.contains(&key)
                || CLEARED_PREFIXES
                    .iter()
                    .any(|prefix| key.starts_with(prefix)))
        {
            command.env_remove(key);
        }
    }

    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build the guests: {e}"));
    if !output.status.success() {
        panic!(
            "building the guest filters failed ({}): {command:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let out = target_dir.join(TARGET).join(PROFILE);
    for guest in &guests {
        let wasm = out.join(format!("{}.wasm", guest.name.replace('-', "_")));
        assert!(
            wasm.is_file(),
            "cargo built the guests but {} is missing",
            wasm.display()
        );
        let var = guest.name.replace('-', "_").to_uppercase();
        println!("cargo:rustc-env=WEFT_GUEST_{var}={}", wasm.display());
    }
}

/// A guest crate to build.
struct Guest {
    /// The package name, e.g. `config-echo`.
    name: String,
    /// What to watch for changes, relative to the tests crate.
    watch: Vec<String>,
}

/// The first-party filters in `filters/`, each folder named after its crate.
const FIRST_PARTY: &[&str] = &[
    "rate-limit",
    "header-router",
    "authz",
    "fault-injection",
    "ext-authz",
];

/// `examples/header-filter`, the first-party filters, and every crate in `programs/` (each folder is named after its
/// crate).
fn guest_crates(manifest_dir: &Path) -> Vec<Guest> {
    let mut guests = vec![Guest {
        name: "header-filter".to_owned(),
        watch: vec!["../examples/header-filter".to_owned()],
    }];
    for name in FIRST_PARTY {
        guests.push(Guest {
            name: (*name).to_owned(),
            watch: vec![
                format!("../filters/{name}/Cargo.toml"),
                format!("../filters/{name}/src"),
            ],
        });
    }
    let programs = manifest_dir.join("programs");
    let entries = fs::read_dir(&programs)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", programs.display()));
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", programs.display()));
        if entry.path().join("Cargo.toml").is_file() {
            let name = entry.file_name().into_string().unwrap_or_else(|name| {
                panic!("guest folder name is not UTF-8: {}", name.to_string_lossy())
            });
            names.push(name);
        }
    }
    names.sort();
    for name in names {
        let mut watch = vec![
            format!("programs/{name}/Cargo.toml"),
            format!("programs/{name}/src"),
        ];
        if programs.join(&name).join("wit").is_dir() {
            watch.push(format!("programs/{name}/wit"));
        }
        guests.push(Guest { name, watch });
    }
    guests
}

/// Install the wasm target with rustup if the toolchain lacks it.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()));
    if let Some(sysroot) = &sysroot
        && sysroot.join("lib/rustlib").join(TARGET).is_dir()
    {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|status| status.success());
    if !added {
        panic!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` did not \
             work; install it (`rustup target add {TARGET}`) and build again"
        );
    }
}

/// The outer build's target directory, where `<target>/guests` goes.
///
/// `OUT_DIR` is `<target>[/<triple>]/<profile>/build/<package>-<hash>/out`, which also covers
/// `--target-dir` and configuration files; `CARGO_TARGET_DIR` and `<workspace>/target` are
/// fallbacks for unusual layouts.
fn outer_target_dir(workspace: &Path) -> PathBuf {
    let out_dir = PathBuf::from(env_var("OUT_DIR"));
    let profile_dir = out_dir
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "build"))
        .and_then(Path::parent);
    if let Some(mut target_dir) = profile_dir.and_then(Path::parent) {
        if let Some(triple) = env::var_os("TARGET")
            && target_dir.file_name() == Some(triple.as_os_str())
            && let Some(parent) = target_dir.parent()
        {
            target_dir = parent;
        }
        return target_dir.to_path_buf();
    }
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

fn env_var(key: &str) -> String {
    env::var(key).unwrap_or_else(|e| panic!("cargo sets {key} for build scripts: {e}"))
}
