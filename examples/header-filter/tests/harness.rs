//! The example filter on the proxy's own runtime, as a filter author tests: `weft-harness`
//! builds this crate for wasm32-wasip2 and runs it in-process.

use weft_harness::{Decision, Harness, TestRequest, response};

fn filter(config: serde_json::Value) -> Harness {
    let wasm = weft_harness::build_this_crate!();
    Harness::builder("header-filter", &wasm)
        .config(config)
        .load()
        .expect("the filter accepts its config")
}

#[test]
fn requests_without_the_required_header_get_400() {
    let filter = filter(serde_json::json!({}));
    assert_eq!(
        filter
            .decide(&mut TestRequest::get("/"))
            .expect("no failure"),
        Decision::Respond(400)
    );
    let mut with_user = TestRequest::get("/").header("x-user", "alice");
    assert_eq!(
        filter.decide(&mut with_user).expect("no failure"),
        Decision::Continue
    );
}

#[test]
fn responses_get_the_configured_header() {
    let filter = filter(serde_json::json!({
        "required_header": "x-team",
        "response_header": { "name": "x-checked", "value": "yes" },
    }));
    let request = TestRequest::get("/").header("x-team", "payments");
    let mut upstream = response(200);
    filter
        .on_response(&request, &mut upstream)
        .expect("no failure");
    assert_eq!(
        upstream.headers.get("x-checked").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );
}

#[test]
fn an_empty_required_header_is_refused() {
    let wasm = weft_harness::build_this_crate!();
    let error = Harness::builder("header-filter", &wasm)
        .config(serde_json::json!({ "required_header": "" }))
        .load()
        .expect_err("refused");
    assert!(error.to_string().contains("required_header"), "{error}");
}
