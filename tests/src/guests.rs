//! Absolute paths of the guest filters (wasm components) that `build.rs` compiled from
//! `tests/programs/*`; each is tied to the tests that use it.

/// The `examples/header-filter` example: config `{required_header (default x-user),
/// response_header: {name, value} (default x-filtered-by: weft)}`. A request without the
/// required header gets 400 `missing required header: <name>\n`; responses get the header.
pub const HEADER_FILTER: &str = env!("WEFT_GUEST_HEADER_FILTER");

/// Edits headers both ways. Request: sets `x-weft-added: 1`, removes `x-weft-remove`, appends
/// `x-weft-multi: b`, and rewrites the path to the value of `x-weft-rewrite` when present.
/// Response: sets `x-weft-response: 1`, `x-weft-saw-path`, `x-weft-readonly: ok`,
/// `x-weft-route`, `x-weft-listener`, `x-weft-direction` and `x-weft-client: yes|no`.
pub const HEADERS: &str = env!("WEFT_GUEST_HEADERS");

/// Reads config `{greeting, status?}`: with `status` it replies locally (body = greeting),
/// otherwise responses get `x-greeting: <greeting>`. Rejects an empty greeting
/// ("greeting must not be empty") and unknown or mistyped fields.
pub const CONFIG_ECHO: &str = env!("WEFT_GUEST_CONFIG_ECHO");

/// Panics ("trap filter panicked on purpose") in `on-request-headers`.
pub const TRAP: &str = env!("WEFT_GUEST_TRAP");

/// Loops forever on paths starting with `/loop`; other requests get `x-spin: passed`.
pub const SPIN: &str = env!("WEFT_GUEST_SPIN");

/// Returns invalid actions: `/bad-status` replies with status 42, `/bad-header` sets a header
/// named `bad name`.
pub const BAD_ACTION: &str = env!("WEFT_GUEST_BAD_ACTION");

/// Body hooks: a request body containing `forbidden` gets 400 `forbidden body`; otherwise the
/// request body gets `!` appended and the response body is upper-cased.
pub const BODY: &str = env!("WEFT_GUEST_BODY");

/// Defines its own metrics: counter `requests_seen{method}`, gauge `last_path_len` and
/// histogram `path_len`.
pub const METRICS: &str = env!("WEFT_GUEST_METRICS");

/// Reads `x-user` and continues: the cheapest filter that still crosses into the guest.
pub const NOOP: &str = env!("WEFT_GUEST_NOOP");

/// A valid component of another world: the proxy must refuse it with a clear error.
pub const WRONG_WORLD: &str = env!("WEFT_GUEST_WRONG_WORLD");

/// Calls `println!`, `eprintln!` and builds a std `HashMap` on every request, then sets
/// `x-stdio: <path length>`; on `/sleep` it calls `std::thread::sleep`, which must trap.
pub const STDIO: &str = env!("WEFT_GUEST_STDIO");

/// The first-party rate-limit filter (`filters/rate-limit`); its README is the config reference.
pub const RATE_LIMIT: &str = env!("WEFT_GUEST_RATE_LIMIT");

/// The first-party header-router filter (`filters/header-router`).
pub const HEADER_ROUTER: &str = env!("WEFT_GUEST_HEADER_ROUTER");

/// The first-party authz filter (`filters/authz`).
pub const AUTHZ: &str = env!("WEFT_GUEST_AUTHZ");

/// The first-party fault-injection filter (`filters/fault-injection`).
pub const FAULT_INJECTION: &str = env!("WEFT_GUEST_FAULT_INJECTION");

/// Drives the WIT 0.2 host capabilities from request headers: `x-steer` chooses the upstream,
/// `x-add-response` adds `x-added` to the response, `x-delay-ms` (+ `x-delay-then: <status>`)
/// delays (then replies), `/local` replies locally; every response gets `x-saw-upstream`.
pub const STEER: &str = env!("WEFT_GUEST_STEER");

/// `weft:filter@0.3.0`'s additions, driven by request headers: `x-call: <upstream>` calls it
/// (`x-call-path`, `x-call-timeout-ms`, `x-call-echo` forwarded as `x-echo`) and the upstream
/// request gets `x-call-status`/`x-call-body` or `x-call-error: <kind>` (`x-call-deny`: 502
/// instead); `x-call-again: n` makes n more calls from `on-call-response`; responses get
/// `x-state: <method> <path>` from the request's state; `x-count: <key>` increments a shared
/// counter (response header `x-count`); `x-store-set: k=v` (+ `x-store-ttl-ms`) and
/// `x-store-get: k` (response header `x-store-value`, `absent` when absent).
pub const CALLOUT: &str = env!("WEFT_GUEST_CALLOUT");

/// The first-party ext-authz filter.
pub const EXT_AUTHZ: &str = env!("WEFT_GUEST_EXT_AUTHZ");

/// `tests/programs/headers` as built against `weft:filter@0.2.0` (checked in: a filter built
/// before 0.3.0, unchanged), for the compatibility tests.
pub const HEADERS_V02: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/contract-0.2/headers.wasm"
);

/// `filters/rate-limit` as built against `weft:filter@0.2.0` (checked in), for the
/// compatibility tests: token buckets, metrics and response headers through the adapter.
pub const RATE_LIMIT_V02: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/contract-0.2/rate_limit.wasm"
);

/// A component exporting `weft:filter/handler@0.1.0`: a contract version the proxy refuses,
/// naming it.
pub const OLD_CONTRACT: &str = env!("WEFT_GUEST_OLD_CONTRACT");

/// `tests/programs/noop` as built against `weft:filter@0.2.0` (checked in), for the hook-call
/// benchmark: the adapter's cost against the same filter built against 0.3.0.
pub const NOOP_V02: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/contract-0.2/noop.wasm"
);
