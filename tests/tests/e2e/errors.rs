//! Refusing to start: config mistakes and bad filters are reported before serving, with enough
//! context (file, line, field, filter, module) for an operator to fix them.

use weft_tests::{CONFIG_FILE, guests, proxy_config_error, proxy_start_error, startup_error};

use crate::{filter, line_of, one_route};

/// An upstream address for configs that never get to send anything.
const NOWHERE: &str = "127.0.0.1:9";

fn assert_mentions(message: &str, what: &str, expected: &str) {
    assert!(
        message.contains(expected),
        "the error must name {what} ({expected:?}): {message}"
    );
}

/// Asserts `message` points at `line` of the config file: `weft.yaml:<line>:<col>`.
fn assert_points_at(message: &str, lines: &[usize]) {
    let found = lines
        .iter()
        .any(|line| message.contains(&format!("{CONFIG_FILE}:{line}:")));
    assert!(
        found,
        "the error must point at {CONFIG_FILE} line {lines:?} (as `{CONFIG_FILE}:<line>:<col>`): {message}"
    );
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let yaml = format!(
        r#"listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters: []
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
        colour: blue
upstreams:
  - name: app
    endpoints: ["{NOWHERE}"]
"#
    );
    let message = proxy_config_error(&yaml);
    assert_points_at(&message, &[line_of(&yaml, "colour: blue")]);
    assert_mentions(&message, "the unknown field", "colour");
    assert_mentions(&message, "where it is", "routes");
}

#[test]
fn unknown_upstream_is_rejected_with_its_line() {
    let yaml = format!(
        r#"listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters: []
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: nowhere
upstreams:
  - name: app
    endpoints: ["{NOWHERE}"]
"#
    );
    let message = proxy_config_error(&yaml);
    // The `upstream:` line itself, or the route it belongs to.
    assert_points_at(
        &message,
        &[
            line_of(&yaml, "upstream: nowhere"),
            line_of(&yaml, "- name: app"),
        ],
    );
    assert_mentions(&message, "the field", "upstream");
    assert_mentions(&message, "the missing upstream", "nowhere");
}

#[test]
fn malformed_duration_is_rejected_with_its_line() {
    let yaml = format!(
        r#"listeners:
  - name: inbound
    address: 127.0.0.1:0
    direction: inbound
    filters: []
    routes:
      - name: app
        match: {{ path: {{ prefix: / }} }}
        upstream: app
        timeout: soonish
upstreams:
  - name: app
    endpoints: ["{NOWHERE}"]
"#
    );
    let message = proxy_config_error(&yaml);
    assert_points_at(&message, &[line_of(&yaml, "timeout: soonish")]);
    assert_mentions(&message, "the field", "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_module_file_names_the_filter() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let module = dir.path().join("missing.wasm");
    let module = module.to_str().expect("temporary paths are UTF-8 here");
    let yaml = one_route(
        NOWHERE.parse().expect("address"),
        &[filter("ghost", module, "")],
    );
    let message = startup_error(&yaml).await;
    assert_mentions(&message, "the filter", "ghost");
    assert_mentions(&message, "the module path", module);
}

/// Bytes that are certainly not a wasm component (a fixed pseudo-random sequence).
fn garbage_bytes() -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_module_fails_start_naming_the_filter() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let module = dir.path().join("junk.wasm");
    std::fs::write(&module, garbage_bytes()).expect("writing the garbage module");
    let module = module.to_str().expect("temporary paths are UTF-8 here");
    let yaml = one_route(
        NOWHERE.parse().expect("address"),
        &[filter("junk", module, "")],
    );
    let message = proxy_start_error(&yaml).await;
    assert_mentions(&message, "the filter", "junk");
    assert_mentions(&message, "the module path", module);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_of_another_world_fails_start_naming_the_filter() {
    let yaml = one_route(
        NOWHERE.parse().expect("address"),
        &[filter("alien", guests::WRONG_WORLD, "")],
    );
    let message = proxy_start_error(&yaml).await;
    assert_mentions(&message, "the filter", "alien");
    assert_mentions(&message, "the module path", guests::WRONG_WORLD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_rejecting_its_config_fails_start() {
    let cases = [
        (r#"config: { greeting: "" }"#, "greeting must not be empty"),
        (r#"config: { greeting: hi, colour: red }"#, "colour"),
        (r#"config: { greeting: 42 }"#, "greeting"),
    ];
    for (config, expected) in cases {
        let yaml = one_route(
            NOWHERE.parse().expect("address"),
            &[filter("welcomer", guests::CONFIG_ECHO, config)],
        );
        let message = proxy_start_error(&yaml).await;
        assert_mentions(
            &message,
            &format!("the filter (with `{config}`)"),
            "welcomer",
        );
        assert_mentions(
            &message,
            &format!("the filter's own reason (with `{config}`)"),
            expected,
        );
    }
}
