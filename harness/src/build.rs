//! Building the filter crate under test for `wasm32-wasip2`, from inside its own tests.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, PoisonError};

/// The target filters are built for: it emits a component directly.
const TARGET: &str = "wasm32-wasip2";

/// Build the crate the calling test belongs to and evaluate to the component's path (a
/// `String`); panics with cargo's errors if the build fails.
///
/// The first call in a test binary builds (in release mode, into
/// `<target>/weft-harness/wasm32-wasip2/release`, so the outer build's artifacts are left
/// alone); later calls reuse the result.
#[macro_export]
macro_rules! build_this_crate {
    () => {
        $crate::build_crate(
            ::std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            env!("CARGO_PKG_NAME"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
}

/// Why a filter crate did not build.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// cargo could not be started.
    #[error("cannot run cargo to build {package}: {source}")]
    Spawn {
        /// The cargo package that was being built.
        package: String,
        /// What failed.
        source: std::io::Error,
    },
    /// cargo ran and failed.
    #[error(
        "building {package} for {TARGET} failed (is the target installed? `rustup target add \
         {TARGET}`):\n{stderr}"
    )]
    Failed {
        /// The cargo package that was being built.
        package: String,
        /// cargo's error output.
        stderr: String,
    },
    /// cargo succeeded but the component is not where it should be.
    #[error("cargo built {package} but {} is missing: is its crate-type `cdylib`?", path.display())]
    Missing {
        /// The cargo package that was being built.
        package: String,
        /// Where the component should be.
        path: PathBuf,
    },
}

/// Components already built by this process, by package directory.
static BUILT: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);

/// Build package `package`, whose `Cargo.toml` is in `manifest_dir`, for `wasm32-wasip2` in
/// release mode, and return the path of its component. See [`build_this_crate!`].
pub fn build_crate(manifest_dir: &Path, package: &str) -> Result<String, BuildError> {
    // Held across the build: tests running in parallel wait for one build instead of racing.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(path) = built.get(manifest_dir) {
        return Ok(path.clone());
    }
    let target_dir = target_dir(manifest_dir).join("weft-harness");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(manifest_dir)
        .args(["build", "--release", "--target", TARGET, "-p", package])
        .arg("--target-dir")
        .arg(&target_dir)
        // Small, quick-to-load modules; the SDK reports panic messages before aborting.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        // Flags meant for the test build (coverage, sanitizers) do not apply to wasm.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    let output = command.output().map_err(|source| BuildError::Spawn {
        package: package.to_owned(),
        source,
    })?;
    if !output.status.success() {
        return Err(BuildError::Failed {
            package: package.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let path = target_dir
        .join(TARGET)
        .join("release")
        .join(format!("{}.wasm", package.replace('-', "_")));
    if !path.is_file() {
        return Err(BuildError::Missing {
            package: package.to_owned(),
            path,
        });
    }
    let path = path.to_string_lossy().into_owned();
    built.insert(manifest_dir.to_path_buf(), path.clone());
    Ok(path)
}

/// The target directory of the running test: the test binary is
/// `<target>[/<triple>]/<profile>/deps/<name>-<hash>`. Falls back to `CARGO_TARGET_DIR`, then
/// `<manifest_dir>/target`.
fn target_dir(manifest_dir: &Path) -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then_some(())?;
        let profile = deps.parent()?;
        let above = profile.parent()?;
        // Skip a `<triple>` directory (a cross build) if there is one.
        if above.join("CACHEDIR.TAG").is_file() {
            Some(above.to_path_buf())
        } else {
            above.parent().map(Path::to_path_buf)
        }
    });
    from_exe
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| manifest_dir.join("target"))
}
