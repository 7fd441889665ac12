//! Shared helpers for weft's end-to-end tests: real upstream servers and a gRPC service on
//! `127.0.0.1:0`, HTTP/1.1, h2c and gRPC clients, the guest filters `build.rs` compiled, and
//! starting the proxy from a YAML string, and a fake Kubernetes API server for the controller.
//!
//! The tests themselves live in one binary, `tests/e2e`, to keep link time down.

pub mod auth_service;
pub mod bench;
pub mod client;
pub mod control_plane;
pub mod discovery;
pub mod grpc;
pub mod guests;
pub mod kube_fake;
pub mod load;
pub mod metrics;
pub mod proxy;
pub mod scripted;
pub mod upstream;

pub use auth_service::AuthService;
pub use client::{
    Body, HttpClient, Proto, REQUEST_TIMEOUT, Reply, body, empty, get, get_h2c, get_with,
    h2c_client, http1_client, next_chunk, post_with, request, send, send_h2c_direct,
};
pub use grpc::{EchoClient, EchoReply, EchoRequest, EchoService, echo_client};
pub use metrics::{Scrape, metric, scrape};
pub use proxy::{
    CONFIG_FILE, SingleThreadProxy, TestProxy, error_chain, proxy_config_error, proxy_start_error,
    ran_alone_in_child, start_proxy, startup_error,
};
pub use scripted::{
    Behaviour, HEALTH_PATH, ScriptedUpstream, UPSTREAM_HEADER, one_upstream_config, tally, wait_for,
};
pub use upstream::{GarbageUpstream, Seen, SilentUpstream, Upstream, closed_addr};
/// The filter harness, as filter authors use it.
pub use weft_harness as harness;

/// The error type of streaming bodies in these helpers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
