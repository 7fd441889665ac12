//! The proxy's state directory: the last good snapshot and the modules it names, written so a
//! crash leaves the old file or the new one, never half of one.

use std::path::{Path, PathBuf};

use prost::Message as _;
use weft_api::v1::Snapshot;
use weft_runtime::cache;

use super::is_digest;

const SNAPSHOT_FILE: &str = "snapshot.pb";
const MODULES_DIR: &str = "modules";

/// The proxy's state directory: the last good snapshot and the modules it names.
pub(super) struct Store {
    dir: PathBuf,
}

impl Store {
    pub(super) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    pub(super) fn snapshot_path(&self) -> PathBuf {
        self.dir.join(SNAPSHOT_FILE)
    }

    pub(super) fn module_path(&self, digest: &str) -> PathBuf {
        self.dir.join(MODULES_DIR).join(format!("{digest}.wasm"))
    }

    /// Digests of the modules on disk, named as the hello wants them.
    pub(super) fn module_digests(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(MODULES_DIR)) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                let digest = name.strip_suffix(".wasm")?;
                is_digest(digest).then(|| digest.to_owned())
            })
            .collect()
    }

    /// A module from disk, verified again: the disk may have been changed under us.
    pub(super) fn load_module(&self, digest: &str) -> Result<Vec<u8>, String> {
        let path = self.module_path(digest);
        let bytes = std::fs::read(&path).map_err(|e| {
            format!(
                "module {digest} was neither sent nor found on disk ({}: {e})",
                path.display()
            )
        })?;
        if cache::digest(&bytes) != digest {
            // Remove it so the next hello does not claim it.
            let _ = std::fs::remove_file(&path);
            return Err(format!(
                "module {digest} on disk ({}) is corrupt: its bytes do not match the digest; removed",
                path.display()
            ));
        }
        Ok(bytes)
    }

    pub(super) fn save_module(&self, digest: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.module_path(digest);
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, bytes)
    }

    pub(super) fn load_snapshot(&self) -> std::io::Result<Option<Snapshot>> {
        let bytes = match std::fs::read(self.snapshot_path()) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Snapshot::decode(bytes.as_slice())
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    pub(super) fn save_snapshot(&self, snapshot: &Snapshot) -> std::io::Result<()> {
        write_atomically(&self.snapshot_path(), &snapshot.encode_to_vec())
    }
}

/// Write to a temporary file, sync it, and rename it over `path`: a crash leaves the old
/// file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
