//! Compiled modules cached on disk, so a restart does not recompile.
//!
//! A `.cwasm` is only valid for the wasmtime version and engine settings that produced it, so
//! the file name carries both the module's sha256 and the engine's compatibility hash.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine};

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
///
/// `compiler` configures the engine that compiles: one of its own, dropped after each module
/// (see [`compile_apart`]), whose output `engine` loads.
pub(crate) fn compile(
    engine: &Engine,
    compiler: &Config,
    dir: Option<&Path>,
    digest: &str,
    bytes: &[u8],
) -> wasmtime::Result<Component> {
    let path = dir.map(|dir| dir.join(format!("{digest}-{}.cwasm", engine_key(engine))));
    if let Some(path) = path.as_deref().filter(|path| path.exists()) {
        // SAFETY: wasmtime requires that the file was produced by `Component::serialize` (or
        // `precompile_component`) of a compatible engine and not tampered with. We only ever
        // write this directory with such output (atomically, via rename), the name pins the
        // engine's compatibility hash, and the directory is as trusted as the proxy's own
        // binary.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, path) };
        match loaded {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "ignoring unusable cached module");
                let _ = std::fs::remove_file(path);
            }
        }
    }
    let component = compile_apart(engine, compiler, bytes).and_then(|compiled| {
        if let Some(path) = &path {
            match store(&compiled, path) {
                // Loaded from the file, the code is mapped from the page cache: shared, and
                // not counted as the proxy's private memory.
                // SAFETY: as for a cached file; this one holds what was just compiled.
                #[allow(unsafe_code)]
                Ok(()) => return unsafe { Component::deserialize_file(engine, path) },
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled module");
                }
            }
        }
        // SAFETY: `compile_apart` produced these bytes a moment ago, with an engine whose
        // compatibility hash equals `engine`'s (or with `engine` itself).
        #[allow(unsafe_code)]
        unsafe {
            Component::deserialize(engine, &compiled)
        }
    });
    release_free_heap();
    component
}

/// Compile `bytes` into a serialized component for `engine`, with an engine of its own
/// configured by `compiler` that is dropped right after — or with `engine` itself when that
/// engine's output would not load in `engine` (their compatibility hashes differ).
///
/// wasmtime keeps one cranelift context per compiling thread for its engine's lifetime, and
/// those hold buffers sized for the largest function compiled: 27 MiB in use after the four
/// policy filters. A proxy that compiled them at start (a new pod, whose cache is empty) idled
/// at 51.6 MiB resident where one that loaded them from the cache idled at 20.9 MiB. Dropping
/// the compiling engine frees the contexts, and [`compile`] then has glibc return the free
/// pages ([`crate::memory`] says why that needs fixed thresholds too).
fn compile_apart(engine: &Engine, compiler: &Config, bytes: &[u8]) -> wasmtime::Result<Vec<u8>> {
    let apart = Engine::new(compiler)?;
    if engine_key(&apart) != engine_key(engine) {
        tracing::debug!(
            "the compiling engine's settings differ from the runtime's: compiling in the runtime's engine"
        );
        return engine.precompile_component(bytes);
    }
    apart.precompile_component(bytes)
}

/// Give glibc's free heap pages back to the kernel: after a compile, tens of MiB of them, in
/// the compiling threads' arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_heap() {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own free lists, under its
    // own locks: it may be called from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_heap() {}

fn store(serialized: &[u8], path: &Path) -> std::io::Result<()> {
    // Unique per writer, so two loads of the same module never interleave their writes.
    let tmp = path.with_extension(format!(
        "tmp{}-{:x}",
        std::process::id(),
        getrandom::u64().unwrap_or_default()
    ));
    std::fs::write(&tmp, serialized)?;
    std::fs::rename(&tmp, path)
}
