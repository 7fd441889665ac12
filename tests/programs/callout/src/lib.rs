//! Test guest for what `weft:filter@0.3.0` added, driven by request headers.
//!
//! - `x-call: <upstream>` (with `x-call-path`, default `/`, and `x-call-timeout-ms`): calls
//!   the upstream with `GET`, forwarding `x-call-echo` (as `x-echo`) and `x-call-auth` (as
//!   `authorization`) when present. On the answer the request
//!   goes upstream with `x-call-status: <status>` and `x-call-body: <body>` (the answer's first
//!   200 bytes), or `x-call-error: <kind>`; with `x-call-deny`, a failed or non-2xx call is
//!   answered with 502 instead. `x-call-again: <n>` makes n more calls in a row from
//!   `on-call-response` (to test the per-request cap); `x-call-calls` on the upstream request
//!   says how many answers the filter got.
//! - Per-request state: the request hook stores `<method> <path>` (and the call count); the
//!   response hook adds `x-state: <what it stored>` to the response, which proves the response
//!   hook of the same request read it, whichever instance served it.
//! - `x-count: <key>`: increments the shared counter `<key>` with compare-and-swap (retrying on
//!   conflicts) and adds `x-count: <new value>` to the response.
//! - `x-store-set: <key>=<value>` with optional `x-store-ttl-ms`; `x-store-get: <key>` adds
//!   `x-store-value: <value>` (or `absent`) to the response; `x-store-error` reports a refused
//!   write.
//! - `x-state-size: <n>`: tries to store n bytes of state and reports `x-state-error` when refused.

use std::time::Duration;

use weft_sdk::store::{self, StoreError};
use weft_sdk::{
    Action, CallError, CallRequest, CallResponse, Filter, Hooks, LocalResponse, Request, Response,
};

/// See the crate docs.
pub struct Callout;

fn call_for(request: &Request, upstream: &str) -> Action {
    let path = request.header("x-call-path").unwrap_or_else(|| "/".into());
    let mut call = CallRequest::get(upstream, &path);
    if let Some(echo) = request.header("x-call-echo") {
        call = call.header("x-echo", echo);
    }
    if let Some(auth) = request.header("x-call-auth") {
        call = call.header("authorization", auth);
    }
    if let Some(ms) = request
        .header("x-call-timeout-ms")
        .and_then(|v| v.parse::<u64>().ok())
    {
        call = call.timeout(Duration::from_millis(ms));
    }
    Action::Call(call)
}

fn kind(e: &CallError) -> &'static str {
    match e {
        CallError::UnknownUpstream(_) => "unknown-upstream",
        CallError::InvalidRequest(_) => "invalid-request",
        CallError::Timeout => "timeout",
        CallError::ResponseTooLarge => "response-too-large",
        CallError::TooManyCalls => "too-many-calls",
        CallError::Unavailable(_) => "unavailable",
        _ => "other",
    }
}

fn increment(key: &str) -> Result<u64, StoreError> {
    loop {
        let (n, version) = match store::get(key) {
            Some(e) => (
                String::from_utf8_lossy(&e.value)
                    .parse::<u64>()
                    .unwrap_or(0),
                e.version,
            ),
            None => (0, 0),
        };
        match store::compare_and_swap(key, version, (n + 1).to_string().as_bytes(), None) {
            Ok(_) => return Ok(n + 1),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Filter for Callout {
    type Config = ();
    const HOOKS: Hooks = Hooks::REQUEST_HEADERS.union(Hooks::RESPONSE_HEADERS);

    fn new(_config: ()) -> Result<Self, String> {
        Ok(Callout)
    }

    fn on_request_headers(&self, request: &Request) -> Action {
        let _ = request.set_state(format!("{} {}", request.method(), request.path()));
        if let Some(n) = request
            .header("x-state-size")
            .and_then(|v| v.parse::<usize>().ok())
            && let Err(e) = request.set_state(vec![b'x'; n])
        {
            let _ = request.add_response_header("x-state-error", e.to_string());
        }
        if let Some(key) = request.header("x-count") {
            match increment(&key) {
                Ok(n) => {
                    let _ = request.add_response_header("x-count", n.to_string());
                }
                Err(e) => {
                    let _ = request.add_response_header("x-store-error", e.to_string());
                }
            }
        }
        if let Some(set) = request.header("x-store-set")
            && let Some((key, value)) = set.split_once('=')
        {
            let ttl = request
                .header("x-store-ttl-ms")
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_millis);
            if let Err(e) = store::set(key, value.as_bytes(), ttl) {
                let _ = request.add_response_header("x-store-error", format!("{e:?}"));
            }
        }
        if let Some(key) = request.header("x-store-get") {
            let value = store::get(&key).map_or_else(
                || "absent".to_owned(),
                |e| String::from_utf8_lossy(&e.value).into_owned(),
            );
            let _ = request.add_response_header("x-store-value", value);
        }
        match request.header("x-call") {
            Some(upstream) => call_for(request, &upstream),
            None => Action::Continue,
        }
    }

    fn on_call_response(
        &self,
        request: &Request,
        result: Result<CallResponse, CallError>,
    ) -> Action {
        let answers = request
            .header("x-call-calls")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        let _ = request.set_header("x-call-calls", answers.to_string());
        let again = request
            .header("x-call-again")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        if answers <= again
            && let Some(upstream) = request.header("x-call")
        {
            return call_for(request, &upstream);
        }
        let deny = request.header("x-call-deny").is_some();
        match result {
            Ok(response) => {
                let _ = request.set_header("x-call-status", response.status.to_string());
                let body = String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
                    .into_owned();
                let _ = request.set_header("x-call-body", body.trim());
                if deny && !response.is_success() {
                    return Action::Respond(LocalResponse::new(502).body("call refused\n"));
                }
                Action::Continue
            }
            Err(e) => {
                let _ = request.set_header("x-call-error", kind(&e));
                if deny {
                    return Action::Respond(
                        LocalResponse::new(502).body(format!("call failed: {}\n", kind(&e))),
                    );
                }
                Action::Continue
            }
        }
    }

    fn on_response_headers(&self, request: &Request, response: &Response) -> Action {
        let state = request
            .state()
            .map(|s| String::from_utf8_lossy(&s[..s.len().min(200)]).into_owned())
            .unwrap_or_else(|| "none".into());
        let _ = response.set_header("x-state", state);
        Action::Continue
    }
}

weft_sdk::export_filter!(Callout);
