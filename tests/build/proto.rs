//! Generates the gRPC test service's client and server from `proto/echo.proto`.
//!
//! `protox` parses the proto in pure Rust, so no `protoc` is needed on the machine.

use std::path::PathBuf;

/// Compiles `proto/echo.proto` into `$OUT_DIR/weft.test.echo.rs` (messages, client and server).
#[allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from stdout"
)]
pub(crate) fn compile() {
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("proto");
    let proto = dir.join("echo.proto");
    println!("cargo:rerun-if-changed={}", proto.display());

    let fds = match protox::compile([&proto], [&dir]) {
        Ok(fds) => fds,
        Err(e) => panic!("cannot parse {}: {e:?}", proto.display()),
    };
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // protox already told cargo what to watch; there is no protoc run to trace.
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("cannot generate gRPC code from {}: {e}", proto.display()));
}
