//! The gRPC contract between weft's control plane and its proxies, generated from
//! `proto/weft/control/v1/control.proto` (read it for the protocol's rules).

/// `weft.control.v1`: the filter distribution service and its messages.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("weft.control.v1");
}

/// The largest message either side accepts: a snapshot carries module bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;
