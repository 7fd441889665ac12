//! The directory source, end to end: files on disk to a subscribed client.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use weft_controlplane::ControlPlane;
use weft_controlplane::source::dir::DirSource;

const MODULE: &[u8] = b"\0asm rate limit";
const OTHER: &[u8] = b"\0asm another module";

fn definition(name: &str, limit: u32) -> String {
    format!(
        "metadata:\n  name: {name}\nspec:\n  module:\n    file: mods/rl.wasm\n  config:\n    limit: {limit}\n"
    )
}

fn write(dir: &Path, file: &str, text: &str) {
    // Write-then-rename, as editors do; the watcher must see it.
    let tmp = dir.join(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(file)).unwrap();
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("mods")).unwrap();
    std::fs::write(dir.path().join("mods/rl.wasm"), MODULE).unwrap();
    std::fs::write(dir.path().join("mods/other.wasm"), OTHER).unwrap();
    dir
}

#[tokio::test]
async fn edits_reach_a_subscribed_proxy_and_bad_edits_lose_nothing() {
    let dir = setup();
    write(dir.path(), "rl.yaml", &definition("rate-limit", 5));
    let cp = ControlPlane::new("weft-system");
    let source = DirSource::start(dir.path(), cp.clone()).unwrap();
    assert!(source.errors().is_empty(), "{:?}", source.errors());
    let server = start(&cp).await;
    let mut proxy = subscribe(server.local_addr(), hello("default", "p1", &[], &[]))
        .await
        .unwrap();
    let first = proxy.next().await;
    assert_eq!(first.filters[0].name, "default/rate-limit");
    assert_eq!(first.filters[0].config_json, r#"{"limit":5}"#);
    assert_eq!(first.filters[0].generation, 1);
    assert_eq!(first.filters[0].module_sha256, digest(MODULE));
    assert_eq!(&cp.catalog().modules[&digest(MODULE)][..], MODULE);

    // A new file reaches the proxy.
    write(
        dir.path(),
        "other.yaml",
        "metadata:\n  name: other\nspec:\n  module:\n    file: mods/other.wasm\n  phase: Authn\n",
    );
    let second = proxy.next().await;
    let names: Vec<_> = second.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["default/other", "default/rate-limit"]);

    // A bad edit: the last good definition stays, and the error names file and line.
    write(
        dir.path(),
        "rl.yaml",
        "metadata:\n  name: rate-limit\nspec:\n  module:\n    file: mods/rl.wasm\n  phase: Sometimes\n",
    );
    eventually("the error to be recorded", || !source.errors().is_empty()).await;
    let errors = source.errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].file.ends_with("rl.yaml"), "{errors:?}");
    assert!(errors[0].message.contains("rl.yaml:6:"), "{errors:?}");
    assert!(errors[0].message.contains("spec.phase"), "{errors:?}");
    proxy.expect_quiet(Duration::from_millis(200)).await;
    let kept = cp.catalog();
    let rl = kept
        .filters
        .iter()
        .find(|f| f.name == "rate-limit")
        .unwrap();
    assert_eq!(rl.settings.config_json, r#"{"limit":5}"#);

    // Fixing it clears the error and bumps the generation.
    write(dir.path(), "rl.yaml", &definition("rate-limit", 9));
    let third = proxy.next().await;
    let rl = third
        .filters
        .iter()
        .find(|f| f.name == "default/rate-limit")
        .unwrap();
    assert_eq!(rl.config_json, r#"{"limit":9}"#);
    assert_eq!(rl.generation, 2);
    assert!(source.errors().is_empty(), "{:?}", source.errors());

    // A changed module is a new generation too, with the new bytes.
    std::fs::write(dir.path().join("mods/rl.wasm"), b"\0asm rate limit v2").unwrap();
    let fourth = proxy.next().await;
    let rl = fourth
        .filters
        .iter()
        .find(|f| f.name == "default/rate-limit")
        .unwrap();
    assert_eq!(rl.generation, 3);
    assert_eq!(rl.module_sha256, digest(b"\0asm rate limit v2"));
    assert_eq!(
        &cp.catalog().modules[&digest(b"\0asm rate limit v2")][..],
        b"\0asm rate limit v2"
    );

    // Deleting the file removes the filter.
    std::fs::remove_file(dir.path().join("rl.yaml")).unwrap();
    let fifth = proxy.next().await;
    let names: Vec<_> = fifth.filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["default/other"]);
    server.shutdown().await;
}

#[tokio::test]
async fn sha256_mismatch_and_missing_module_are_errors() {
    let dir = setup();
    write(
        dir.path(),
        "rl.yaml",
        &format!(
            "{}  sha256: \"{}\"\n",
            definition("rate-limit", 1),
            digest(OTHER)
        ),
    );
    write(
        dir.path(),
        "gone.yaml",
        "metadata:\n  name: gone\nspec:\n  module:\n    file: nowhere.wasm\n",
    );
    let cp = ControlPlane::new("weft-system");
    let source = DirSource::start(dir.path(), cp.clone()).unwrap();
    let errors = source.errors();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let gone = errors
        .iter()
        .find(|e| e.file.ends_with("gone.yaml"))
        .unwrap();
    assert!(gone.message.contains("gone.yaml:5:"), "{gone:?}");
    assert!(gone.message.contains("nowhere.wasm"), "{gone:?}");
    let rl = errors.iter().find(|e| e.file.ends_with("rl.yaml")).unwrap();
    assert!(rl.message.contains("spec.sha256"), "{rl:?}");
    assert!(rl.message.contains(&digest(MODULE)), "{rl:?}");
    // Never good, so absent.
    assert!(cp.catalog().filters.is_empty());
    assert_eq!(cp.version(), 1);

    // The right digest makes it good.
    write(
        dir.path(),
        "rl.yaml",
        &format!(
            "{}  sha256: \"{}\"\n",
            definition("rate-limit", 1),
            digest(MODULE)
        ),
    );
    eventually("rl.yaml to be accepted", || cp.catalog().filters.len() == 1).await;
    assert_eq!(source.errors().len(), 1);
}

#[tokio::test]
async fn duplicate_names_are_rejected_naming_both_files() {
    let dir = setup();
    write(dir.path(), "a.yaml", &definition("rate-limit", 1));
    write(dir.path(), "b.yaml", &definition("rate-limit", 2));
    let cp = ControlPlane::new("weft-system");
    let source = DirSource::start(dir.path(), cp.clone()).unwrap();
    let errors = source.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file.ends_with("b.yaml"));
    assert!(errors[0].message.contains("a.yaml"), "{errors:?}");
    assert!(
        errors[0].message.contains("default/rate-limit"),
        "{errors:?}"
    );
    let catalog = cp.catalog();
    assert_eq!(catalog.filters.len(), 1);
    assert_eq!(catalog.filters[0].settings.config_json, r#"{"limit":1}"#);
}

#[tokio::test]
async fn unreadable_directory_is_an_error_naming_it() {
    let cp = ControlPlane::new("weft-system");
    let e = DirSource::start("/nonexistent/weft-defs", cp).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/weft-defs"), "{e}");
}
