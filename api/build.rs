//! Generates the control protocol's messages, client and server from `proto/`.
//!
//! `protox` parses the proto in pure Rust, so no `protoc` is needed on the machine.

use std::path::PathBuf;

#[allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from stdout"
)]
fn main() {
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("proto");
    let proto = root.join("weft/control/v1/control.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let fds = match protox::compile([&proto], [&root]) {
        Ok(fds) => fds,
        Err(e) => panic!("cannot parse {}: {e:?}", proto.display()),
    };
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Module chunks are slices of one shared buffer, not copies.
        .bytes(".weft.control.v1.ModuleChunk.data")
        .emit_rerun_if_changed(false)
        .compile_fds(fds)
        .unwrap_or_else(|e| panic!("cannot generate gRPC code from {}: {e}", proto.display()));
}
