//! Reading `WasmFilter` definition files: defaults, and errors that name file, line and field.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use weft_controlplane::definition::{Direction, FailurePolicy, ModuleSource, Phase, parse_file};

const MINIMAL: &str = "\
metadata:
  name: rate-limit
spec:
  module:
    file: rate_limit.wasm
";

#[test]
fn defaults() {
    let def = parse_file(MINIMAL, Path::new("defs/rl.yaml")).unwrap();
    assert_eq!(def.object.metadata.namespace, "default");
    assert_eq!(def.module_path, Path::new("defs/rate_limit.wasm"));
    let s = &def.settings;
    assert_eq!(s.phase, Phase::Unspecified);
    assert_eq!(s.priority, 0);
    assert_eq!(s.failure_policy, FailurePolicy::FailClosed);
    assert_eq!(s.time_budget_ms, 0);
    assert_eq!(s.max_memory_bytes, 0);
    assert_eq!(s.config_json, "");
    assert!(s.match_labels.is_empty());
    assert_eq!(s.match_spec.direction, None);
}

#[test]
fn full_definition() {
    let src = r#"
apiVersion: weft.dev/v1alpha1
kind: WasmFilter
metadata:
  name: rate-limit
  namespace: billing
spec:
  module:
    file: mods/rate_limit.wasm
  sha256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  config: { limit: 5, keys: [a, b] }
  selector:
    matchLabels: { app: demo }
  phase: Authz
  priority: -3
  match:
    direction: Outbound
    routes: [billing-api]
    pathPrefixes: [/api]
    methods: [GET, POST]
  failurePolicy: FailOpen
  timeBudget: 20ms
  maxMemory: 16MiB
"#;
    let def = parse_file(src, Path::new("rl.yaml")).unwrap();
    assert_eq!(
        def.object.spec.module,
        ModuleSource::file("mods/rate_limit.wasm")
    );
    let s = &def.settings;
    assert_eq!(s.phase, Phase::Authz);
    assert_eq!(s.priority, -3);
    assert_eq!(s.failure_policy, FailurePolicy::FailOpen);
    assert_eq!(s.time_budget_ms, 20);
    assert_eq!(s.max_memory_bytes, 16 << 20);
    assert_eq!(s.match_spec.direction, Some(Direction::Outbound));
    assert_eq!(s.match_spec.methods, ["GET", "POST"]);
    assert_eq!(s.match_labels["app"], "demo");
    let config: serde_json::Value = serde_json::from_str(&s.config_json).unwrap();
    assert_eq!(config, serde_json::json!({"limit": 5, "keys": ["a", "b"]}));
}

fn error(src: &str) -> String {
    parse_file(src, Path::new("defs/rl.yaml"))
        .expect_err("the definition is refused")
        .to_string()
}

fn with_spec(extra: &str) -> String {
    format!("{MINIMAL}{extra}")
}

#[test]
fn bad_phase_names_line_and_field() {
    let e = error(&with_spec("  phase: Authorize\n"));
    assert!(e.starts_with("defs/rl.yaml:6:"), "{e}");
    assert!(e.contains("spec.phase"), "{e}");
    assert!(e.contains("Authz"), "lists the allowed phases: {e}");
}

#[test]
fn unknown_module_kind_says_only_file_is_supported() {
    let e = error("metadata:\n  name: x\nspec:\n  module:\n    url: https://example.com/x.wasm\n");
    assert!(e.starts_with("defs/rl.yaml:5:"), "{e}");
    assert!(e.contains("spec.module.url"), "{e}");
    assert!(e.contains("only supports `file`"), "{e}");
    let e = error("metadata:\n  name: x\nspec:\n  module:\n    http: x\n");
    assert!(e.contains("spec.module"), "{e}");
    assert!(e.contains("file"), "{e}");
}

#[test]
fn bad_sha256_names_line_and_field() {
    let e = error(&with_spec("  sha256: ABCDEF\n"));
    assert!(e.starts_with("defs/rl.yaml:6:"), "{e}");
    assert!(e.contains("spec.sha256"), "{e}");
    assert!(e.contains("64 lowercase hex"), "{e}");
}

#[test]
fn bad_time_budget_names_line_and_field() {
    for (budget, why) in [("fast", "duration"), ("0ms", "more than 0"), ("11s", "10s")] {
        let e = error(&with_spec(&format!("  timeBudget: {budget}\n")));
        assert!(e.starts_with("defs/rl.yaml:6:"), "{e}");
        assert!(e.contains("spec.timeBudget"), "{e}");
        assert!(e.contains(why), "{e}");
    }
}

#[test]
fn bad_max_memory() {
    let e = error(&with_spec("  maxMemory: 8GiB\n"));
    assert!(e.starts_with("defs/rl.yaml:6:"), "{e}");
    assert!(e.contains("spec.maxMemory"), "{e}");
}

#[test]
fn unknown_key_names_line_and_field() {
    let e = error(&with_spec("  prority: 3\n"));
    assert!(e.starts_with("defs/rl.yaml:6:"), "{e}");
    assert!(e.contains("prority"), "{e}");
}

#[test]
fn metadata_and_header_checks() {
    let e = error(
        "apiVersion: weft.dev/v1\nmetadata:\n  name: x\nspec:\n  module:\n    file: x.wasm\n",
    );
    assert!(e.starts_with("defs/rl.yaml:1:"), "{e}");
    assert!(e.contains("apiVersion"), "{e}");
    let e = error("kind: Filter\nmetadata:\n  name: x\nspec:\n  module:\n    file: x.wasm\n");
    assert!(e.contains("kind"), "{e}");
    let e = error("metadata:\n  name: Rate_Limit\nspec:\n  module:\n    file: x.wasm\n");
    assert!(e.starts_with("defs/rl.yaml:2:"), "{e}");
    assert!(e.contains("metadata.name"), "{e}");
    let e = error("spec:\n  module:\n    file: x.wasm\n");
    assert!(e.contains("metadata"), "{e}");
}

#[test]
fn match_checks() {
    let e = error(&with_spec("  match:\n    pathPrefixes: [api]\n"));
    assert!(e.starts_with("defs/rl.yaml:7:"), "{e}");
    assert!(e.contains("spec.match.pathPrefixes"), "{e}");
    let e = error(&with_spec("  match:\n    methods: [get]\n"));
    assert!(e.contains("spec.match.methods"), "{e}");
    assert!(e.contains("uppercase"), "{e}");
    let e = error(&with_spec("  match:\n    direction: inbound\n"));
    assert!(e.contains("spec.match.direction"), "{e}");
}
