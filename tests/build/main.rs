//! Builds what the end-to-end tests need: the guest filters (wasm32-wasip2 components) and the
//! gRPC test service's protobuf code.

mod guests;
mod proto;

fn main() {
    guests::build();
    proto::compile();
}
