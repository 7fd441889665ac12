//! Compiled modules cached on disk, so a restart does not recompile.
//!
//! A `.cwasm` is only valid for the wasmtime version and engine settings that produced it, so
//! the file name carries both the module's sha256 and the engine's compatibility hash.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The hex sha256 of a module.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `$XDG_CACHE_HOME/weft/modules`, else `$HOME/.cache/weft/modules`.
pub(crate) fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("weft").join("modules"))
}

fn engine_key(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// Compile `bytes`, or load the cached compilation of the same bytes for this engine.
pub(crate) fn compile(
    engine: &Engine,
    dir: Option<&Path>,
    digest: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let Some(dir) = dir else {
        return Component::new(engine, bytes);
    };
    let path = dir.join(format!("{digest}-{}.cwasm", engine_key(engine)));
    if path.exists() {
        // SAFETY: wasmtime requires that the file was produced by `Component::serialize` of a
        // compatible engine and not tampered with. We only ever write this directory with
        // `serialize` output (atomically, via rename), the name pins the engine's
        // compatibility hash, and the directory is as trusted as the proxy's own binary.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "ignoring unusable cached module");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let component = Component::new(engine, bytes)?;
    if let Err(e) = store(&component, &path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled module");
    }
    Ok(component)
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    let serialized = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    // Unique per writer, so two loads of the same module never interleave their writes.
    let tmp = path.with_extension(format!(
        "tmp{}-{:x}",
        std::process::id(),
        getrandom::u64().unwrap_or_default()
    ));
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, path)
}
